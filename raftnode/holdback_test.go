package raftnode

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/raft"
)

// TestSnapshotInstallUnderWrites: a follower that needs a snapshot while
// writes go on, faster than it installs one. The leader snapshots and
// compacts several times during the install; without the hold it would
// have compacted past the snapshot it sent, and send a newer one again
// and again while the follower never caught up. With it, the follower
// installs once (twice at most) and catches up by appends.
func TestSnapshotInstallUnderWrites(t *testing.T) {
	frequent := func(cfg *Config) {
		cfg.SnapshotThreshold = 32
		cfg.SnapshotInterval = 20 * time.Millisecond
		cfg.TrailingLogs = 8
	}
	g := mustStartGroupWith(t, 3, frequent)
	mustApply(t, g, putNamespace("ns"))
	f := g.followers(t)[0]
	addr := f.node.RaftAddr()
	f.stop()
	l := g.leader(t)
	for i := range 100 {
		mustApply(t, g, putKey("ns", "o", fmt.Sprint(i), "v"))
	}
	waitFor(t, waitLong, "the leader to compact its log past the stopped follower", func() bool {
		first, _ := l.node.logs.FirstIndex()
		return first > 50
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = l.node.Apply(ctx, putKey("ns", "o", fmt.Sprint("w", i), "v"))
			cancel()
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	cfg := testConfig(f.id, f.dir, addr)
	frequent(&cfg)
	// A slow install: it restores only once 200 more writes, and so
	// several snapshots and compactions on the leader, have happened
	// while it ran (or 10 s have passed).
	cfg.beforeRestore = func() {
		from := l.node.raft.LastIndex()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		deadline := time.Now().Add(10 * time.Second)
		for l.node.raft.LastIndex() < from+200 && time.Now().Before(deadline) {
			<-tick.C
		}
	}
	*f = *mustStartMember(t, cfg, f.dir)
	waitFor(t, waitLong, "the follower to catch up with the leader while writes go on", func() bool {
		return l.node.hold.installed(raft.ServerID(f.id)) > 0 && f.node.raft.LastIndex() >= l.node.raft.CommitIndex()
	})
	// Counted for this follower alone: on a loaded machine the other one
	// may fall more than TrailingLogs behind a compaction and need a
	// snapshot of its own.
	for _, o := range g.members {
		if o != f && o != l {
			if n := l.node.hold.installed(raft.ServerID(o.id)); n > 0 {
				t.Logf("the other follower, %s, installed %d snapshots meanwhile", o.id, n)
			}
		}
	}
	if n := l.node.hold.installed(raft.ServerID(f.id)); n > 2 {
		t.Fatalf("the follower installed %d snapshots to catch up", n)
	}
}

// TestCompactionKeepsNewestSnapshotEntry: a compaction from the log's head
// stops before the newest snapshot's last entry, whose term a leader needs
// to send the entries after it once it has taken another snapshot, and a
// follower's cut of a conflicting suffix is left alone.
func TestCompactionKeepsNewestSnapshotEntry(t *testing.T) {
	store, err := wal.Open(t.TempDir(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	logs := make([]*raft.Log, 100)
	for i := range logs {
		logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: []byte("x")}
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	snaps := raft.NewInmemSnapshotStore()
	sink, err := snaps.Create(raft.SnapshotVersionMax, 80, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	s := holdingLogStore{LogStore: store, snapshots: snaps, hold: &compactionHold{}, leading: func() bool { return true }, log: func(string, ...any) {}}
	// Raft's compaction after a snapshot at 80 with 8 trailing logs, when
	// 100 entries exist: up to min(80, 100-8).
	if err := s.DeleteRange(1, 80); err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 80 {
		t.Fatalf("first index %d after the compaction, want 80 (the newest snapshot's entry kept)", first)
	}
	// A conflicting suffix is cut whole.
	if err := s.DeleteRange(95, 100); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastIndex(); last != 94 {
		t.Fatalf("last index %d after cutting 95..100, want 94", last)
	}
}
