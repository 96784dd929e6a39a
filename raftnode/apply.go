package raftnode

import (
	"context"
	"fmt"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// defaultTimeout bounds calls whose context has no deadline.
const defaultTimeout = 10 * time.Second

func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return defaultTimeout
}

// Apply stamps cmd with this leader's clock and the current command
// version, appends it to the log and waits until it is committed and
// applied here. It returns the FSM's result, or the FSM's domain error, or
// one of this package's errors: ErrNotLeader (nothing was appended),
// ErrLeadershipLost (outcome unknown), ErrTimeout, ErrShutdown,
// ErrLogStorage (nothing was committed).
func (n *Node) Apply(ctx context.Context, cmd *raftcmdv1.Command) (*raftcmdv1.Result, error) {
	if n.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	cmd.Version = fsm.CommandVersion
	cmd.TimeUnixMs = time.Now().UnixMilli()
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("raftnode: encode command: %w", err)
	}
	f := n.raft.Apply(data, timeoutOf(ctx))
	if err := f.Error(); err != nil {
		if mapped := mapError(err); mapped != err {
			return nil, mapped
		}
		// Raft's own failures are mapped above; what is left is the log
		// store's error, which hashicorp/raft hands over as it is.
		return nil, fmt.Errorf("%w: node %s: %w", ErrLogStorage, n.cfg.ID, err)
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		return nil, fmt.Errorf("raftnode: unexpected FSM response %T", f.Response())
	}
	return res.Result, res.Err
}

// ReadIndex returns an index that a linearizable read must wait to have
// applied (WaitApplied) before it reads local state. Only the leader can
// answer it: it makes sure it has committed an entry of its own term (a
// new leader may not yet know the latest commit), notes its commit index,
// then confirms with a quorum that it is still the leader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	term := n.raft.CurrentTerm()
	if n.readyTerm.Load() != term {
		n.barrierMu.Lock()
		if n.readyTerm.Load() != term {
			if err := n.raft.Barrier(timeoutOf(ctx)).Error(); err != nil {
				n.barrierMu.Unlock()
				return 0, mapError(err)
			}
			n.readyTerm.Store(term)
		}
		n.barrierMu.Unlock()
	}
	index := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, mapError(err)
	}
	if n.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w: term changed during the read", ErrNotLeader)
	}
	return index, nil
}

// WaitApplied blocks until the FSM has applied every command up to index,
// or ctx ends. Log entries that carry no command (no-ops, barriers) are
// never handed to the FSM; they do not hold a read back.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := n.appliedChan()
		if n.Covers(index) {
			return nil
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting to apply index %d (applied %d): %w", ErrTimeout, index, n.applied.Load(), ctx.Err())
		}
	}
}

// Covers reports whether the FSM has applied every command up to index.
func (n *Node) Covers(index uint64) bool {
	applied := n.applied.Load()
	return applied >= index || n.onlyNoCommandsBetween(applied, index)
}

// onlyNoCommandsBetween reports whether Raft has dispatched every entry up
// to index and none of the entries after applied carries a command or a
// configuration.
func (n *Node) onlyNoCommandsBetween(applied, index uint64) bool {
	if n.raft.AppliedIndex() < index {
		return false
	}
	var l raft.Log
	for i := applied + 1; i <= index; i++ {
		if err := n.logs.GetLog(i, &l); err != nil {
			return false
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}

// AppliedIndex returns the highest index the FSM has finished applying.
func (n *Node) AppliedIndex() uint64 { return n.applied.Load() }

// CaughtUp reports whether this node knows a leader and has applied every
// command its commit index covers.
func (n *Node) CaughtUp() bool {
	if id, _ := n.Leader(); id == "" {
		return false
	}
	commit := n.raft.CommitIndex()
	applied := n.applied.Load()
	return applied >= commit || n.onlyNoCommandsBetween(applied, commit)
}
