package wal

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// nopFSM is a state machine that keeps nothing: these tests look at the
// log Raft leaves in the store, not at what it applies.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                    { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error)    { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error         { _, err := io.Copy(io.Discard, rc); return err }
func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

type nopSnapshot struct{}

// follower is a hashicorp/raft node over a Store, which the test drives
// as its leaders would, over the in-memory transport. It never commits
// anything (LeaderCommitIndex 0): the tests look at its log.
type follower struct {
	t       *testing.T
	s       *Store
	leader  *raft.InmemTransport
	addr    raft.ServerAddress
	members []byte
}

func startFollower(t *testing.T) *follower {
	t.Helper()
	leaderAddr, trans := raft.NewInmemTransport("")
	_, leader := raft.NewInmemTransport(leaderAddr)
	leader.Connect(trans.LocalAddr(), trans)
	trans.Connect(leaderAddr, leader)
	snaps := raft.NewInmemSnapshotStore()
	snapshotIndex := func() (uint64, error) {
		metas, err := snaps.List()
		if err != nil || len(metas) == 0 {
			return 0, err
		}
		return metas[0].Index, nil
	}
	s := mustOpen(t, t.TempDir(), Options{NoSync: true, SnapshotIndex: snapshotIndex})
	conf := raft.DefaultConfig()
	conf.LocalID = "f"
	conf.HeartbeatTimeout, conf.ElectionTimeout = time.Minute, time.Minute // the test is the leader
	conf.LogOutput = io.Discard
	r, err := raft.NewRaft(conf, nopFSM{}, s, s, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown().Error() })
	members := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{
		{ID: "l", Address: leaderAddr, Suffrage: raft.Voter},
		{ID: "f", Address: trans.LocalAddr(), Suffrage: raft.Voter},
	}})
	return &follower{t: t, s: s, leader: leader, addr: trans.LocalAddr(), members: members}
}

// entries returns the entries from..to of term; entry 1 holds the
// configuration.
func (f *follower) entries(from, to, term uint64) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		l := &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte{byte(i)}}
		if i == 1 {
			l.Type, l.Data = raft.LogConfiguration, f.members
		}
		ls = append(ls, l)
	}
	return ls
}

func (f *follower) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("l"), Addr: []byte(f.leader.LocalAddr())}
}

// appendEntries sends an AppendEntries of term after the entry prev of
// term prevTerm and returns whether the follower took it.
func (f *follower) appendEntries(term, prev, prevTerm uint64, ls []*raft.Log) bool {
	f.t.Helper()
	req := &raft.AppendEntriesRequest{RPCHeader: f.header(), Term: term, PrevLogEntry: prev, PrevLogTerm: prevTerm, Entries: ls}
	var resp raft.AppendEntriesResponse
	if err := f.leader.AppendEntries("f", f.addr, req, &resp); err != nil {
		f.t.Fatal(err)
	}
	return resp.Success
}

// installSnapshot sends an empty snapshot at index, of term.
func (f *follower) installSnapshot(index, term uint64) {
	f.t.Helper()
	req := &raft.InstallSnapshotRequest{
		RPCHeader: f.header(), SnapshotVersion: raft.SnapshotVersionMax, Term: term,
		LastLogIndex: index, LastLogTerm: term, Configuration: f.members, ConfigurationIndex: 1,
	}
	var resp raft.InstallSnapshotResponse
	if err := f.leader.InstallSnapshot("f", f.addr, req, &resp, bytes.NewReader(nil)); err != nil || !resp.Success {
		f.t.Fatalf("install a snapshot at %d: %+v %v", index, resp, err)
	}
}

// wantEntries checks that the store holds the entries from..to.
func (f *follower) wantEntries(from, to uint64) {
	f.t.Helper()
	for i := from; i <= to; i++ {
		var l raft.Log
		if err := f.s.GetLog(i, &l); err != nil || l.Index != i {
			f.t.Fatalf("entry %d: %+v %v", i, l, err)
		}
	}
}

// TestInstallSnapshotBelowLogEnd (hashicorp/raft#697): the follower holds
// entries 1..10 and is sent a snapshot at 5 (a leader that lost track of
// it sends its newest snapshot, which can lie below the follower's last
// entry). Raft keeps believing it holds 10, so it accepts the next entries
// after 10 and later applies 6..10 from the store. The store must still
// hold them: a log store that tells Raft it is monotonic has Raft delete
// the whole log after installing a snapshot, and the node then panics
// applying 6, on every start.
func TestInstallSnapshotBelowLogEnd(t *testing.T) {
	f := startFollower(t)
	if !f.appendEntries(1, 0, 0, f.entries(1, 10, 1)) {
		t.Fatal("append 1..10 refused")
	}
	f.installSnapshot(5, 1)
	if !f.appendEntries(1, 10, 1, f.entries(11, 12, 1)) {
		t.Fatal("append 11..12 after 10 refused")
	}
	// What a restarted node reads (NewRaft panics on a missing entry
	// after its snapshot), and what its FSM is handed next.
	f.wantEntries(6, 12)
}

// TestInstallSnapshotPastLogEnd: a follower far behind installs a
// snapshot past its last entry, and takes the entries after it: its log
// starts again there.
func TestInstallSnapshotPastLogEnd(t *testing.T) {
	f := startFollower(t)
	if !f.appendEntries(1, 0, 0, f.entries(1, 10, 1)) {
		t.Fatal("append 1..10 refused")
	}
	f.installSnapshot(20, 1)
	if !f.appendEntries(1, 20, 1, f.entries(21, 22, 1)) {
		t.Fatal("append 21..22 after the snapshot at 20 refused")
	}
	f.wantEntries(21, 22)
	if first, _ := f.s.FirstIndex(); first != 21 {
		t.Fatalf("first index %d, want 21", first)
	}
}
