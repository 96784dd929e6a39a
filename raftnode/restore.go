package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Restore replaces the whole replicated state with the snapshot stream r
// of size bytes (fsm.Snapshot.WriteTo's format) that holds the state at
// index, taken in term. Only the leader may call it, and r must already be verified: a
// stream the FSM then refuses makes hashicorp/raft panic.
//
// Raft gives the restored snapshot a new index, above every index the log
// has used (max(last index, index)+1), installs it here and forces every
// follower to install it as a snapshot; Restore returns once a no-op after
// it is committed, with that new index. The FSM's applied index moves to
// it (coverSnapshot), so writes after the restore get higher revisions.
func (n *Node) Restore(ctx context.Context, index, term uint64, size int64, r io.Reader) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	before := n.raft.LastIndex()
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: index, Term: term, Size: size}
	// Raft's timeout bounds only the enqueueing, yet a restore that outlasts
	// it may be reported as timed out after it happened: bound it by the
	// caller's deadline alone (none: wait for the outcome).
	var timeout time.Duration
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	if err := n.raft.Restore(meta, r, timeout); err != nil {
		return 0, fmt.Errorf("raftnode: restore: %w", mapError(err))
	}
	metas, err := n.snaps.List()
	if err != nil {
		return 0, fmt.Errorf("raftnode: restore: %w", err)
	}
	for _, m := range metas {
		if m.Index > before && m.Index > index {
			return m.Index, nil
		}
	}
	return n.fsm.AppliedIndex(), nil
}

// Seed prepares the Raft directory dir of a node of a brand-new cluster
// from a backup: a snapshot at index and term holding the snapshot stream
// r, whose configuration is servers. The node's FSM must hold the same
// state (fsm.Restore of the same stream). A node started on dir has
// existing state, so it needs no bootstrap, and its new entries come
// after index. Seed refuses a directory that already has Raft state.
func Seed(dir string, index, term uint64, servers []Server, r io.Reader) error {
	if len(servers) == 0 {
		return errors.New("raftnode: seed: no servers")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, nil)
	if err != nil {
		return fmt.Errorf("raftnode: seed: snapshot store: %w", err)
	}
	store, err := openLogStore(dir, wal.Options{}, snaps, hclog.NewNullLogger())
	if err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	defer store.Close()
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	if has {
		return fmt.Errorf("raftnode: seed: %s already has Raft state", dir)
	}
	cfg := raft.Configuration{}
	for _, s := range servers {
		suffrage := raft.Voter
		if !s.Voter {
			suffrage = raft.Nonvoter
		}
		cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address), Suffrage: suffrage})
	}
	if term == 0 {
		term = 1
	}
	// The transport only encodes the legacy peer list of the metadata.
	_, trans := raft.NewInmemTransport("")
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, cfg, index, trans)
	if err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	if _, err := io.Copy(sink, r); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	// The current term starts at the snapshot's: a candidate's term is then
	// never below the last log term it compares, as Raft assumes.
	if err := store.SetUint64([]byte("CurrentTerm"), term); err != nil {
		return fmt.Errorf("raftnode: seed: %w", err)
	}
	return nil
}
