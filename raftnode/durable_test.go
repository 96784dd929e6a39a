package raftnode

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/raft"
)

// TestLeaderSyncOverlapsReplication: the leader's log syncs in the
// background, so its followers take an entry while the leader's own
// fdatasync is still running (held here). Raft then counts the entry
// committed (the followers' copies are durable), but until the leader's
// copy is durable too the leader applies nothing and answers no write, and
// the commit index it sends its followers stays below the entry, so they
// apply nothing either. Released, the writes complete everywhere.
func TestLeaderSyncOverlapsReplication(t *testing.T) {
	var held atomic.Value // the ID of the member whose background syncs wait
	held.Store("")
	release := make(chan struct{})
	var releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(release) }) }
	g := mustStartGroupWith(t, 3, func(cfg *Config) {
		cfg.NoSync = false
		id := cfg.ID
		cfg.beforeSync = func() {
			if held.Load() == id {
				<-release
			}
		}
	})
	t.Cleanup(open) // after the group's cleanup is registered: runs first
	mustApply(t, g, putNamespace("ns"))
	l := g.leader(t)
	fs := g.followers(t)

	held.Store(l.id)
	base := l.node.raft.LastIndex()
	apply := func(key string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := l.node.Apply(ctxFor(t, waitLong), putKey("ns", "o", key, "v"))
			done <- err
		}()
		return done
	}
	first := apply("k1")
	idx1 := base + 1
	waitFor(t, waitLong, "both followers to hold the write the leader has not synced", func() bool {
		return fs[0].node.raft.LastIndex() >= idx1 && fs[1].node.raft.LastIndex() >= idx1
	})
	waitFor(t, waitLong, "the leader to count the write committed", func() bool {
		return l.node.raft.CommitIndex() >= idx1
	})
	if d := l.node.store.Durable(); d >= idx1 {
		t.Fatalf("the leader's durable index is %d, want below %d: its sync was not held", d, idx1)
	}
	second := apply("k2")
	idx2 := idx1 + 1
	waitFor(t, waitLong, "both followers to hold a write sent after the leader counted the first committed", func() bool {
		return fs[0].node.raft.LastIndex() >= idx2 && fs[1].node.raft.LastIndex() >= idx2
	})
	for _, m := range g.members {
		if a := m.node.AppliedIndex(); a >= idx1 {
			t.Fatalf("%s applied index %d, at or past the write that only the followers' disks hold (%d)", m.id, a, idx1)
		}
	}
	for _, f := range fs {
		if c := f.node.raft.CommitIndex(); c >= idx1 {
			t.Fatalf("follower %s learned commit index %d, at or past %d, before the leader's copy was durable", f.id, c, idx1)
		}
	}
	select {
	case err := <-first:
		t.Fatalf("the write was answered (%v) before the leader's copy was durable", err)
	default:
	}

	open()
	for _, done := range []chan error{first, second} {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitLong):
			t.Fatal("a write did not complete once the leader's sync went through")
		}
	}
	waitFor(t, waitLong, "every member to apply both writes", func() bool {
		for _, m := range g.members {
			if m.node.AppliedIndex() < idx2 {
				return false
			}
		}
		return true
	})
}

// TestSyncedConnAnswersOnlyDurable: a Raft connection this node accepted
// writes nothing (an append's success, a vote) while entries its log
// holds are not yet durable (watched for 100 ms), then writes.
func TestSyncedConnAnswersOnlyDurable(t *testing.T) {
	release := make(chan struct{})
	store, err := wal.Open(t.TempDir(), wal.Options{BeforeSync: func() { <-release }})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(func() { open(); _ = store.Close() })
	if err := store.StoreLogs([]*raft.Log{{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	local, remote := net.Pipe()
	defer local.Close()
	defer remote.Close()
	c := syncedConn{Conn: local, synced: store.Synced}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("response"))
		wrote <- err
	}()
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, 8)
		n, _ := remote.Read(b)
		got <- b[:n]
	}()
	select {
	case b := <-got:
		t.Fatalf("the connection wrote %q before the log was durable", b)
	case <-time.After(100 * time.Millisecond): // nothing written meanwhile
	}
	open()
	if b := <-got; string(b) != "response" {
		t.Fatalf("read %q, want the response", b)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}
