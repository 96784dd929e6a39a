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

// TestInstallSnapshotBelowLogEnd drives a hashicorp/raft follower over
// this store as a leader would (hashicorp/raft#697): the follower holds
// entries 1..10 and is sent a snapshot at 5 (a leader that lost track of
// it sends its newest snapshot, which can lie below the follower's last
// entry). Raft keeps believing it holds 10, so it accepts the next entries
// after 10 and later applies 6..10 from the store. The store must still
// hold them: a log store that tells Raft it is monotonic has Raft delete
// the whole log after installing a snapshot, and the node then panics
// applying 6, on every start.
func TestInstallSnapshotBelowLogEnd(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{NoSync: true})
	leaderAddr, follower := raft.NewInmemTransport("")
	_, leader := raft.NewInmemTransport(leaderAddr)
	leader.Connect(follower.LocalAddr(), follower)
	follower.Connect(leaderAddr, leader)

	conf := raft.DefaultConfig()
	conf.LocalID = "f"
	conf.HeartbeatTimeout, conf.ElectionTimeout = time.Minute, time.Minute // the test is the leader
	conf.LogOutput = io.Discard
	r, err := raft.NewRaft(conf, nopFSM{}, s, s, raft.NewInmemSnapshotStore(), follower)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Shutdown().Error() }()

	members := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{
		{ID: "l", Address: leaderAddr, Suffrage: raft.Voter},
		{ID: "f", Address: follower.LocalAddr(), Suffrage: raft.Voter},
	}})
	header := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("l"), Addr: []byte(leaderAddr)}
	log := func(i uint64) *raft.Log {
		if i == 1 {
			return &raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: members}
		}
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}}
	}
	appendEntries := func(prev uint64, from, to uint64) {
		t.Helper()
		req := &raft.AppendEntriesRequest{RPCHeader: header, Term: 1, PrevLogEntry: prev, PrevLogTerm: 1}
		if prev == 0 {
			req.PrevLogTerm = 0
		}
		for i := from; i <= to; i++ {
			req.Entries = append(req.Entries, log(i))
		}
		var resp raft.AppendEntriesResponse
		if err := leader.AppendEntries("f", follower.LocalAddr(), req, &resp); err != nil || !resp.Success {
			t.Fatalf("append %d..%d after %d: %+v %v", from, to, prev, resp, err)
		}
	}

	appendEntries(0, 1, 10)
	snap := &raft.InstallSnapshotRequest{
		RPCHeader: header, SnapshotVersion: raft.SnapshotVersionMax, Term: 1,
		LastLogIndex: 5, LastLogTerm: 1, Configuration: members, ConfigurationIndex: 1,
	}
	var sresp raft.InstallSnapshotResponse
	if err := leader.InstallSnapshot("f", follower.LocalAddr(), snap, &sresp, bytes.NewReader(nil)); err != nil || !sresp.Success {
		t.Fatalf("install snapshot at 5: %+v %v", sresp, err)
	}
	appendEntries(10, 11, 12)

	// What a restarted node reads (NewRaft panics on a missing entry
	// after its snapshot), and what its FSM is handed next.
	for i := uint64(6); i <= 12; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Index != i {
			t.Fatalf("entry %d, after the snapshot at 5, which Raft counts as stored: %+v %v", i, l, err)
		}
	}
}
