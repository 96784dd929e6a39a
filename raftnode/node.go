// Package raftnode wires cairn's state machine into hashicorp/raft: the
// TCP transport (mutual TLS when configured, shared with the peer API), the
// log store (package wal), the snapshot store, bootstrap and
// membership, propose-and-wait and linearizable read barriers. It knows
// nothing of HTTP or the public API.
package raftnode

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/cairndb/cairn/tlsutil"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Node is one member of the Raft group. Its methods are safe for
// concurrent use.
type Node struct {
	cfg   Config
	fsm   *fsm.FSM
	raft  *raft.Raft
	store *wal.Store     // log and stable store (logstore.go)
	logs  *raft.LogCache // the log store as Raft sees it: store behind a cache
	snaps *raft.FileSnapshotStore
	trans *raft.NetworkTransport
	mux   *mux // the Raft port: Raft's streams and the peer API's

	applied   atomic.Uint64 // highest index the FSM has finished applying
	appliedMu sync.Mutex
	appliedCh chan struct{} // closed and replaced whenever applied moves

	barrierMu sync.Mutex
	readyTerm atomic.Uint64 // term in which this node, as leader, has applied a barrier

	log        hclog.Logger
	storageErr atomic.Pointer[error] // why the FSM cannot apply now; nil when it can (storage.go)
	// started is raft once NewRaft has returned, for what Raft's own
	// goroutines call before then (following).
	started atomic.Pointer[raft.Raft]
	hold    compactionHold // the log kept for snapshots sent (holdback.go)

	stop         chan struct{} // closed by Shutdown before Raft stops: ends storage retries
	shutdownOnce sync.Once
}

// Server is one member of the Raft configuration.
type Server struct {
	ID      string
	Address string
	Voter   bool
}

// New starts a node over the state machine f. The node owns neither f
// (the caller closes it after Shutdown) nor any listener but its Raft
// transport. A node whose data directory is new does nothing until
// Bootstrap is called or a leader adds it.
func New(cfg Config, f *fsm.FSM) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	logOut := cfg.LogOutput
	if logOut == nil {
		logOut = os.Stderr
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.LevelFromString(cfg.LogLevel),
		Output: logOut,
	}).With("node", cfg.ID)

	n := &Node{cfg: cfg, fsm: f, appliedCh: make(chan struct{}), log: logger, stop: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			n.closeStores()
		}
	}()

	var err error
	n.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, cfg.SnapshotRetain, logger.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("raftnode: snapshot store: %w", err)
	}
	removeUnfinishedSnapshots(cfg.Dir, logger)
	if benchCeiling {
		logger.Warn("built with the benchceiling tag: batch writes are acknowledged and never applied; for benchmarks only")
	}
	walOpts := wal.Options{NoSync: cfg.NoSync, SyncInline: n.following, BeforeSync: cfg.beforeSync}
	if n.store, err = openLogStore(cfg.Dir, walOpts, n.snaps, logger.Named("wal")); err != nil {
		return nil, err
	}
	if f.Rebuilt() {
		logger.Warn(f.RebuildReason() + "; rebuilding it from the newest snapshot and the log")
	}
	if err := n.catchUpFromSnapshot(); err != nil {
		return nil, err
	}
	n.applied.Store(f.AppliedIndex())

	var advertise net.Addr
	if cfg.AdvertiseAddr != "" {
		if advertise, err = net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr); err != nil {
			return nil, fmt.Errorf("raftnode: AdvertiseAddr: %w", err)
		}
	}
	var mutual *tlsutil.Mutual
	if cfg.TLS.Enabled() {
		if mutual, err = tlsutil.LoadMutual(cfg.TLS.CAFile, cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return nil, fmt.Errorf("raftnode: %w", err)
		}
	}
	if n.mux, err = newMux(cfg.BindAddr, advertise, mutual, cfg.Dial, logger.Named("transport")); err != nil {
		return nil, fmt.Errorf("raftnode: transport: %w", err)
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftStream{connListener: n.mux.raft, synced: n.store.Synced},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger.Named("transport"),
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NoSnapshotRestoreOnStart = true // the FSM keeps its own state on disk
	rc.BatchApplyCh = true
	// Up to 256 entries per AppendEntries, per log store commit and per
	// FSM batch (the default is 64): under many clients one fsync pair and
	// one FSM commit then cover more writes. At 256 clients it cut the
	// servers' CPU per put by 13% (docs/benchmarks.md).
	rc.MaxAppendEntries = 256
	rc.Logger = logger
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	// The leader reads back every entry it sends to followers; the cache
	// serves the recent ones from memory instead of decoding them from
	// the log store again (Consul keeps 512 too).
	held := holdingLogStore{LogStore: n.store, snapshots: n.snaps, hold: &n.hold, leading: n.leading, log: logger.Info}
	if n.logs, err = raft.NewLogCache(logCacheEntries, held); err != nil {
		return nil, fmt.Errorf("raftnode: log cache: %w", err)
	}
	n.raft, err = raft.NewRaft(rc, &machine{n: n}, n.logs, n.store, n.snaps, durableTransport{NetworkTransport: n.trans, store: n.store, hold: &n.hold})
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	n.started.Store(n.raft)
	ok = true
	return n, nil
}

// removeUnfinishedSnapshots deletes the snapshot directories a crash left
// unfinished (*.tmp): Raft skips them but never removes them, so each
// would keep its size of disk for good.
func removeUnfinishedSnapshots(dir string, logger hclog.Logger) {
	tmps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*.tmp"))
	for _, tmp := range tmps {
		if err := os.RemoveAll(tmp); err != nil {
			logger.Warn("cannot remove an unfinished snapshot", "path", tmp, "err", err)
			continue
		}
		logger.Info("removed a snapshot a crash left unfinished", "path", tmp)
	}
}

// logCacheEntries is how many recent log entries the leader keeps in
// memory to send to followers.
const logCacheEntries = 512

// catchUpFromSnapshot restores the newest snapshot into the FSM when the
// FSM's own state is older than it (for example after its database was
// lost): with NoSnapshotRestoreOnStart Raft would otherwise resume after
// the snapshot and never hand the FSM the entries it lacks.
func (n *Node) catchUpFromSnapshot() error {
	metas, err := n.snaps.List()
	if err != nil {
		return fmt.Errorf("raftnode: list snapshots: %w", err)
	}
	if len(metas) == 0 || metas[0].Index <= n.fsm.AppliedIndex() {
		return nil
	}
	// The snapshot's index may lie past its last command (no-ops, barriers):
	// its header says what the FSM had applied when it was taken.
	_, rc, err := n.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("raftnode: open snapshot %s: %w", metas[0].ID, err)
	}
	covered, err := fsm.ReadSnapshotIndex(rc)
	_ = rc.Close()
	if err != nil {
		return fmt.Errorf("raftnode: snapshot %s: %w", metas[0].ID, err)
	}
	if covered <= n.fsm.AppliedIndex() {
		return n.coverSnapshot() // the FSM holds it all already
	}
	_, rc, err = n.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("raftnode: open snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	if err := n.fsm.Restore(rc); err != nil {
		return fmt.Errorf("raftnode: restore snapshot %s: %w", metas[0].ID, err)
	}
	return n.coverSnapshot()
}

// coverSnapshot records in the FSM that its state covers the newest
// snapshot's index. A snapshot's index may lie past the FSM's own applied
// index (no-ops and barriers after the last command never reach the FSM);
// without this a restored node would wait for entries it will never see
// and restore the same snapshot again on every start.
func (n *Node) coverSnapshot() error {
	metas, err := n.snaps.List()
	if err != nil || len(metas) == 0 {
		return nil
	}
	if err := n.fsm.CoverIndex(metas[0].Index); err != nil {
		return fmt.Errorf("raftnode: cover snapshot %s: %w", metas[0].ID, err)
	}
	return nil
}

// Bootstrap forms a new cluster of servers. It is a no-op on a node that
// already has state, so every node of an --initial-cluster may call it with
// the same list on every start.
func (n *Node) Bootstrap(servers []Server) error {
	cfg := raft.Configuration{}
	for _, s := range servers {
		suffrage := raft.Voter
		if !s.Voter {
			suffrage = raft.Nonvoter
		}
		cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Address), Suffrage: suffrage})
	}
	err := n.raft.BootstrapCluster(cfg).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("raftnode: bootstrap: %w", err)
	}
	return nil
}

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// RaftAddr returns the address peers reach this node's Raft transport at.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// Shutdown stops Raft and closes the transport and the log store. It does
// not close the FSM.
func (n *Node) Shutdown() error {
	var err error
	n.shutdownOnce.Do(func() {
		close(n.stop)
		err = n.raft.Shutdown().Error()
		n.closeStores()
	})
	return err
}

func (n *Node) closeStores() {
	if n.trans != nil {
		_ = n.trans.Close()
	}
	if n.mux != nil {
		_ = n.mux.Close()
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			n.log.Error("closing the Raft log", "error", err)
		}
	}
}

// setApplied records that the FSM has applied everything up to index and
// wakes the readers waiting for it.
func (n *Node) setApplied(index uint64) {
	if index <= n.applied.Load() {
		return
	}
	n.applied.Store(index)
	n.appliedMu.Lock()
	close(n.appliedCh)
	n.appliedCh = make(chan struct{})
	n.appliedMu.Unlock()
}

func (n *Node) appliedChan() <-chan struct{} {
	n.appliedMu.Lock()
	defer n.appliedMu.Unlock()
	return n.appliedCh
}

// mapError turns hashicorp/raft's errors into this package's.
func mapError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %w", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrShutdown, err)
	case strings.Contains(err.Error(), "timed out"):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return err
}
