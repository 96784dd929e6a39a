package server

import (
	"testing"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
)

// TestDiskReportEstimate: a member's free space counts down by twice what
// the leader proposed since the report (its log and its state), never
// below zero, and is low only under a reserve that is on.
func TestDiskReportEstimate(t *testing.T) {
	r := diskReport{measured: 10 << 20, free: 10 << 20, reserve: 4 << 20, proposed: 100}
	for _, c := range []struct {
		proposed, want uint64
		low            bool
	}{
		{100, 10 << 20, false},
		{100 + 2<<20, 6 << 20, false},
		{100 + 3<<20 + 1, 4<<20 - 2, true},
		{100 + 6<<20, 0, true},
		// A count read just before a newer report arrived (checkDisk
		// loads it before it takes the lock): no bytes since, not an
		// underflow to "0 MiB free".
		{99, 10 << 20, false},
	} {
		if got := r.freeNow(c.proposed); got != c.want || r.low(c.proposed) != c.low {
			t.Errorf("proposed %d: free %d low %v, want %d %v", c.proposed, got, r.low(c.proposed), c.want, c.low)
		}
	}
	if off := (diskReport{free: 0}); off.low(1 << 30) {
		t.Errorf("a member without a reserve counts as low")
	}
}

// TestDiskReportMerge: when writes were proposed since the last report, a
// new one is held to that report's measurement less twice what was
// proposed since (the member may not have written it yet); with nothing
// proposed since, the measurement counts as is.
func TestDiskReportMerge(t *testing.T) {
	now := time.Now()
	r := diskReport{measured: 10 << 20, free: 10 << 20, reserve: 4 << 20, proposed: 0, at: now}
	// 2 MiB proposed, the member shows only 1 MiB used: 10 - 2×2 = 6 MiB.
	m := r.merge(diskReport{measured: 9 << 20, free: 9 << 20, reserve: 4 << 20, proposed: 2 << 20, at: now})
	if m.free != 6<<20 || m.measured != 9<<20 {
		t.Fatalf("a lagging member: free %d measured %d, want 6 MiB, 9 MiB", m.free, m.measured)
	}
	// It used more than that: the measurement wins.
	if m2 := m.merge(diskReport{measured: 3 << 20, free: 3 << 20, proposed: 3 << 20, at: now}); m2.free != 3<<20 {
		t.Fatalf("a measurement below the bound: free %d", m2.free)
	}
	// The bound comes from the last measurement (9 MiB), not from the
	// last estimate (6 MiB): caution does not pile up over intervals.
	if m2 := m.merge(diskReport{measured: 9 << 20, free: 9 << 20, proposed: 3 << 20, at: now}); m2.free != 7<<20 {
		t.Fatalf("one more MiB proposed: free %d, want 7 MiB", m2.free)
	}
	// Nothing proposed since: the measurement counts.
	if m2 := m.merge(diskReport{measured: 8 << 20, free: 8 << 20, proposed: 2 << 20, at: now}); m2.free != 8<<20 {
		t.Fatalf("no writes since: free %d, want 8 MiB", m2.free)
	}
	if m2 := m.merge(diskReport{measured: 1 << 20, free: 1 << 20, proposed: 10 << 20, at: now}); m2.free != 0 {
		t.Fatalf("more proposed than measured: free %d, want 0", m2.free)
	}
	if first := (diskReport{}).merge(m); first != m {
		t.Fatalf("a first report changed: %+v", first)
	}
}

// TestOnlyDeletes: what the leader accepts while a disk is low.
func TestOnlyDeletes(t *testing.T) {
	for _, c := range []struct {
		cmd  *raftcmdv1.Command
		want bool
	}{
		{&raftcmdv1.Command{Op: &raftcmdv1.Command_BatchWrite{BatchWrite: &raftcmdv1.BatchWrite{Deletes: []string{"k"}}}}, true},
		{&raftcmdv1.Command{Op: &raftcmdv1.Command_BatchWrite{BatchWrite: &raftcmdv1.BatchWrite{Deletes: []string{"k"}, Puts: []*raftcmdv1.KeyPut{{Key: "p"}}}}}, false},
		{&raftcmdv1.Command{Op: &raftcmdv1.Command_DeleteObject{DeleteObject: &raftcmdv1.DeleteObject{}}}, true},
		{&raftcmdv1.Command{Op: &raftcmdv1.Command_DeleteNamespace{DeleteNamespace: &raftcmdv1.DeleteNamespace{}}}, true},
		{&raftcmdv1.Command{Op: &raftcmdv1.Command_DeleteAlarm{DeleteAlarm: &raftcmdv1.DeleteAlarm{}}}, true},
		{&raftcmdv1.Command{Op: &raftcmdv1.Command_PutNamespace{PutNamespace: &raftcmdv1.PutNamespace{}}}, false},
		{&raftcmdv1.Command{Op: &raftcmdv1.Command_Txn{Txn: &raftcmdv1.Txn{}}}, false},
		{&raftcmdv1.Command{Op: &raftcmdv1.Command_SetAlarm{SetAlarm: &raftcmdv1.SetAlarm{}}}, false},
	} {
		if got := onlyDeletes(c.cmd); got != c.want {
			t.Errorf("onlyDeletes(%v) = %v, want %v", c.cmd, got, c.want)
		}
	}
}
