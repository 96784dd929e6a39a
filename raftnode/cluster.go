package raftnode

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's id and Raft address, both empty when
// no leader is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Status is a point-in-time view of this node's Raft state.
type Status struct {
	State        string // "Leader", "Follower", "Candidate" or "Shutdown"
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastIndex    uint64
	LeaderID     string
	// LastContact is when this node last heard from the leader; zero on the
	// leader itself.
	LastContact time.Time
}

// Status returns the node's Raft state.
func (n *Node) Status() Status {
	id, _ := n.Leader()
	s := Status{
		State:        n.raft.State().String(),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.applied.Load(),
		LastIndex:    n.raft.LastIndex(),
		LeaderID:     id,
	}
	if s.State != raft.Leader.String() {
		s.LastContact = n.raft.LastContact()
	}
	return s
}

// Servers returns the current Raft configuration.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, mapError(err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// AddServer adds (or updates) a member; a voter unless voter is false.
// Only the leader can; others return ErrNotLeader.
func (n *Node) AddServer(ctx context.Context, id, addr string, voter bool) error {
	var f raft.IndexFuture
	if voter {
		f = n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx))
	} else {
		f = n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeoutOf(ctx))
	}
	return mapError(f.Error())
}

// RemoveServer removes a member. Only the leader can.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	found := false
	for _, s := range servers {
		found = found || s.ID == id
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownServer, id)
	}
	return mapError(n.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx)).Error())
}

// TransferLeadership hands leadership to voter id, or to the most
// up-to-date voter when id is empty. Only the leader can.
func (n *Node) TransferLeadership(id string) error {
	if id == "" {
		return mapError(n.raft.LeadershipTransfer().Error())
	}
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == id {
			return mapError(n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(s.Address)).Error())
		}
	}
	return fmt.Errorf("%w: %q", ErrUnknownServer, id)
}

// Snapshot takes a snapshot now and compacts the log behind it.
func (n *Node) Snapshot() error {
	return mapError(n.raft.Snapshot().Error())
}

// TakeSnapshot takes a snapshot now, compacts the log behind it and
// returns the index it covers.
func (n *Node) TakeSnapshot() (uint64, error) {
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		return 0, mapError(err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		return 0, fmt.Errorf("raftnode: open the new snapshot: %w", err)
	}
	_ = rc.Close()
	return meta.Index, nil
}
