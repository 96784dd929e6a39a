package raftnode

import (
	"net"

	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/raft"
)

// The log store returns from StoreLogs once a batch is written and syncs
// it in the background (wal/durable.go), so that the leader's fdatasync
// runs while its followers write theirs: one sync on a write's path where
// hashicorp/raft would put two in series. hashicorp/raft then counts the
// leader's copy of an entry toward its commitment before that copy is
// durable. Three rules keep that count from being acted on before a
// majority of disks hold the entry, which is what Raft's safety rests on:
//
//   - a node acknowledges nothing over Raft before its log is synced: the
//     connections it accepts write no response (an append's success, a
//     vote) until every entry written so far is durable (syncedConn);
//   - the leader tells no follower that an entry is committed before the
//     entry is durable on the leader: the commit index in the appends it
//     sends is capped at its durable index (durableTransport);
//   - the FSM applies no entry before it is durable on the node, so no
//     write is answered and no read sees it before (machine.ApplyBatch).
//
// Committed, an entry is then durable on the leader and on enough
// followers to make a majority. Configuration entries, whose commitment
// Raft acts on by itself, are synced before StoreLogs returns. Barriers
// and no-ops, which Raft answers without the FSM, carry no state.
//
// The wait in syncedConn is per connection, so a heartbeat's answer also
// waits for a sync in progress (on a follower, which syncs inline, at most
// the one its main loop is running): a read's leadership check may take
// that much longer, and followers whose every fdatasync stalls for longer
// than the leader lease make the leader step down where their heartbeats
// used to keep it. Telling heartbeats apart per RPC would put a goroutine
// hand-off on every append's answer instead. etcd's followers behave alike:
// they send a Ready's messages, heartbeat answers included, only once its
// entries are saved to their WAL.

// following reports whether this node is not Raft's leader: its log then
// syncs appends as it takes them (wal.Options.SyncInline), since its
// answer waits for the sync anyway and nothing else would overlap it.
func (n *Node) following() bool {
	r := n.started.Load()
	return r != nil && r.State() != raft.Leader
}

// leading reports whether this node is Raft's leader, for what Raft's own
// goroutines call (holdingLogStore).
func (n *Node) leading() bool {
	r := n.started.Load()
	return r != nil && r.State() == raft.Leader
}

// durableTransport caps the commit index the leader sends at its log's
// durable index.
type durableTransport struct {
	*raft.NetworkTransport
	store *wal.Store
	hold  *compactionHold // snapshots being sent (holdback.go)
}

func (t durableTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	capCommit(t.store, args)
	return t.NetworkTransport.AppendEntries(id, target, args, resp)
}

func (t durableTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return durablePipeline{AppendPipeline: p, store: t.store}, nil
}

type durablePipeline struct {
	raft.AppendPipeline
	store *wal.Store
}

func (p durablePipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	capCommit(p.store, args)
	return p.AppendPipeline.AppendEntries(args, resp)
}

// capCommit lowers the commit index args tells a follower to what is
// durable here. A follower that learns a lower commit index only learns it
// later: the next append, or the next after CommitTimeout, carries more.
func capCommit(store *wal.Store, args *raft.AppendEntriesRequest) {
	args.LeaderCommitIndex = min(args.LeaderCommitIndex, store.Durable())
}

// syncedConn is a Raft connection this node accepted: it carries requests
// in and responses out, and writes a response only once every log entry
// written so far is durable. A log that can no longer sync fails the write,
// which closes the connection.
type syncedConn struct {
	net.Conn
	synced func() error
}

func (c syncedConn) Write(b []byte) (int, error) {
	if err := c.synced(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
