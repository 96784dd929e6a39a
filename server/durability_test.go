package server

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestRebootRebuildsState: the FSM commits without fsync, so after a
// reboot a node whose state database was not closed cleanly may hold a
// torn file. It must not read it: it sets it aside, restores its newest
// snapshot, replays the log after it and ends with the others' state.
// Here the file is garbage and the marker says "open, another boot", as a
// power loss in the middle of writing would leave them.
func TestRebootRebuildsState(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{Durable: true, SnapshotThreshold: 64, TrailingLogs: 16})
	leader := c.leader(t)
	mustPutNamespace(t, leader, "rb")
	f := c.followers(t)[0]
	for i := range 100 {
		mustPutKey(t, leader, "rb", "o", fmt.Sprintf("k%03d", i), i)
	}
	c.waitConverged(t)
	if _, err := f.Node.TakeSnapshot(); err != nil {
		t.Fatalf("snapshot of %s: %v", f.id, err)
	}
	for i := 100; i < 150; i++ {
		mustPutKey(t, leader, "rb", "o", fmt.Sprintf("k%03d", i), i)
	}
	c.waitConverged(t)
	raftAddr, grpcAddr, httpAddr := f.Node.RaftAddr(), f.Server.GRPCAddr(), f.Server.HTTPAddr()
	f.stop()

	fsmDir := filepath.Join(f.dir, "fsm")
	garbage := make([]byte, 1<<20)
	for i := range garbage {
		garbage[i] = byte(i*131 + i>>9)
	}
	if err := os.WriteFile(filepath.Join(fsmDir, "state.db"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fsmDir, "state.marker"), []byte("cairn-state-marker 1\nboot a-boot-before-the-power-loss\nstate open\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	f = c.mustRestart(t, f, raftAddr, grpcAddr, httpAddr)
	if !f.FSM.Rebuilt() {
		t.Fatalf("%s trusted a state database that a reboot may have torn", f.id)
	}
	if _, err := os.Stat(filepath.Join(fsmDir, "state.db.torn")); err != nil {
		t.Fatalf("the suspect database was not kept aside: %v", err)
	}
	c.mustStateHash(t)
	if got := mustGetKey(t, f, "rb", "o", "k149", Serializable); got.GetValue().GetNumberValue() != 149 {
		t.Fatalf("rebuilt node reads k149 = %v", got.GetValue())
	}
}
