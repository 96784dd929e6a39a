package raftnode

import (
	"fmt"
	"io"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
)

// machine adapts *fsm.FSM to raft.BatchingFSM and tells the node what has
// been applied. Raft calls it from its one FSM goroutine.
type machine struct {
	n *Node
}

var _ raft.BatchingFSM = (*machine)(nil)

func (m *machine) Apply(l *raft.Log) interface{} {
	return m.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch hands commands to the FSM; configuration entries arrive too
// and only advance its applied index.
//
// When the FSM cannot write its database (a full disk, an I/O error) it has
// applied nothing, and ApplyBatch tries the same entries again, backing
// off, until they commit or the node shuts down; it never skips them and
// never crashes the node. Meanwhile Raft's FSM goroutine waits here:
// hashicorp/raft queues up to 128 more batches, then its main loop waits
// for the queue (a stalled leader stops committing and answering read
// barriers, a stalled follower stops acknowledging appends, so the leader
// treats it as unreachable). Queries keep answering from the state as it
// was, and Node.StorageError says why the node is stalled.
func (m *machine) ApplyBatch(logs []*raft.Log) []interface{} {
	if len(logs) == 0 {
		return nil
	}
	last := logs[len(logs)-1].Index
	if benchCeiling {
		if out, ok := ackWrites(logs); ok {
			if err := m.n.store.WaitDurable(last); err != nil {
				panic(err)
			}
			m.n.setApplied(last)
			return out
		}
	}
	entries := make([]fsm.Entry, len(logs))
	for i, l := range logs {
		entries[i].Index = l.Index
		if l.Type == raft.LogCommand {
			entries[i].Data = l.Data
		}
	}
	// An entry is applied only once it is durable in this node's log
	// (durable.go); a log that can no longer sync stalls the FSM as a
	// failing state database does.
	apply := func() ([]fsm.Result, error) {
		if err := m.n.store.WaitDurable(last); err != nil {
			return nil, fmt.Errorf("the Raft log cannot make entries up to %d durable, and this node applies nothing more until it restarts: %w", last, err)
		}
		return m.n.fsm.ApplyBatch(entries)
	}
	results, err := apply()
	if err != nil {
		results, err = m.n.retryStorage(err, apply)
	}
	out := make([]interface{}, len(logs))
	if err != nil { // shut down while the disk was failing: nothing applied
		for i := range out {
			out[i] = fsm.Result{Err: err}
		}
		return out
	}
	for i := range results {
		out[i] = results[i]
	}
	m.n.setApplied(last)
	return out
}

func (m *machine) Snapshot() (raft.FSMSnapshot, error) {
	s, err := m.n.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	return &snapshot{s: s}, nil
}

func (m *machine) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if m.n.cfg.beforeRestore != nil {
		m.n.cfg.beforeRestore()
	}
	if err := m.n.fsm.Restore(rc); err != nil {
		return err
	}
	if err := m.n.coverSnapshot(); err != nil {
		return err
	}
	m.n.setApplied(m.n.fsm.AppliedIndex())
	return nil
}

// snapshot streams an FSM snapshot into Raft's snapshot sink.
type snapshot struct {
	s *fsm.Snapshot
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() { s.s.Release() }
