package raftnode

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// A follower that catches up by installing a snapshot whose last entry
// is a barrier (or a leader's no-op) never becomes caught up, and its
// linearizable reads time out, until another command arrives.
func TestSnapshotEndingInBarrierCaughtUp(t *testing.T) {
	root := t.TempDir()
	g := &group{}
	t.Cleanup(func() {
		for _, m := range g.members {
			m.stop()
		}
	})
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node%d", i)
		dir := root + "/" + id
		cfg := testConfig(id, dir, "127.0.0.1:0")
		cfg.TrailingLogs = 2
		g.members = append(g.members, mustStartMember(t, cfg, dir))
	}
	var servers []Server
	for _, m := range g.members {
		servers = append(servers, Server{ID: m.id, Address: m.node.RaftAddr(), Voter: true})
	}
	for _, m := range g.members {
		if err := m.node.Bootstrap(servers); err != nil {
			t.Fatal(err)
		}
	}
	mustApply(t, g, putNamespace("ns"))
	f := g.followers(t)[0]
	addr := f.node.RaftAddr()
	f.stop()
	for i := range 20 {
		mustApply(t, g, putKey("ns", "obj", fmt.Sprint(i), "v"))
	}
	leader := g.leader(t)
	s, err := leader.node.ReadIndex(ctxFor(t, 5*time.Second)) // first in this term: appends a barrier
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	t.Logf("read index (barrier) %d, leader FSM applied %d, raft applied %d", s, leader.fsm.AppliedIndex(), leader.node.raft.AppliedIndex())

	cfg := testConfig(f.id, f.dir, addr)
	cfg.TrailingLogs = 2
	*f = *mustStartMember(t, cfg, f.dir)
	waitFor(t, waitLong, "the follower to install the snapshot", func() bool { return f.node.raft.AppliedIndex() >= s })
	t.Logf("follower: FSM applied %d, node applied %d, raft applied %d, commit %d", f.fsm.AppliedIndex(), f.node.AppliedIndex(), f.node.raft.AppliedIndex(), f.node.raft.CommitIndex())
	if err := f.node.WaitApplied(ctxFor(t, 3*time.Second), s); err != nil {
		t.Errorf("WaitApplied(%d) on the follower: %v", s, err)
	}
	if !f.node.CaughtUp() {
		t.Errorf("follower not caught up: applied %d, commit %d", f.node.AppliedIndex(), f.node.raft.CommitIndex())
	}
}

func TestRestartDoesNotRestoreAgain(t *testing.T) {
	root := t.TempDir()
	g := &group{}
	t.Cleanup(func() {
		for _, m := range g.members {
			m.stop()
		}
	})
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node%d", i)
		dir := root + "/" + id
		cfg := testConfig(id, dir, "127.0.0.1:0")
		cfg.TrailingLogs = 2
		g.members = append(g.members, mustStartMember(t, cfg, dir))
	}
	var servers []Server
	for _, m := range g.members {
		servers = append(servers, Server{ID: m.id, Address: m.node.RaftAddr(), Voter: true})
	}
	for _, m := range g.members {
		if err := m.node.Bootstrap(servers); err != nil {
			t.Fatal(err)
		}
	}
	mustApply(t, g, putNamespace("ns"))
	leader := g.leader(t)
	if _, err := leader.node.ReadIndex(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := leader.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	addr := leader.node.RaftAddr()
	ino := func() uint64 {
		st, err := os.Stat(leader.dir + "/fsm/state.db")
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	before := ino()
	leader.stop()
	cfg := testConfig(leader.id, leader.dir, addr)
	cfg.TrailingLogs = 2
	*leader = *mustStartMember(t, cfg, leader.dir)
	if after := ino(); after != before {
		t.Errorf("restart replaced the FSM database (inode %d -> %d): the snapshot was restored over an up-to-date FSM", before, after)
	}
}
