package raftnode

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
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
		return l.node.hold.installed() > 0 && f.node.raft.LastIndex() >= l.node.raft.CommitIndex()
	})
	if n := l.node.hold.installed(); n > 2 {
		t.Fatalf("the follower installed %d snapshots to catch up", n)
	}
}
