package server

import (
	"context"
	"io"
	"net"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
)

// Node is what the server needs of the Raft node (*raftnode.Node).
type Node interface {
	ID() string
	RaftAddr() string
	IsLeader() bool
	Leader() (id, addr string)
	Apply(ctx context.Context, cmd *raftcmdv1.Command) (*raftcmdv1.Result, error)
	ReadIndex(ctx context.Context) (uint64, error)
	WaitApplied(ctx context.Context, index uint64) error
	AppliedIndex() uint64
	CaughtUp() bool
	// Covers reports whether every command up to index is applied here.
	Covers(index uint64) bool
	Status() raftnode.Status
	Servers() ([]raftnode.Server, error)
	AddServer(ctx context.Context, id, addr string, voter bool) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership(id string) error
	TakeSnapshot() (uint64, error)
	// Restore installs a verified snapshot stream on every node (leader
	// only) and returns the index it took.
	Restore(ctx context.Context, index, term uint64, size int64, r io.Reader) (uint64, error)
	// PeerListener yields the peer API connections that arrive on the
	// Raft port (mutual TLS when the cluster has it); DialPeer connects to
	// the peer API of the member at a Raft address.
	PeerListener() net.Listener
	DialPeer(ctx context.Context, raftAddr string) (net.Conn, error)
	// VerifyPeer checks that the process at a Raft address holds a
	// certificate of the cluster CA (nil without cluster TLS).
	VerifyPeer(ctx context.Context, raftAddr string) error
	// StorageError says why the state machine cannot apply (its database
	// cannot be written), or nil.
	StorageError() error
}

// State is what the server reads of the applied state (*fsm.FSM).
type State interface {
	Namespace(name string) (*raftcmdv1.Namespace, error)
	Namespaces() ([]*raftcmdv1.Namespace, error)
	// PollNamespaces is Namespaces for a steady poll: it does not commit
	// what waits in the state machine's write transaction.
	PollNamespaces() ([]*raftcmdv1.Namespace, error)
	Members() ([]*raftcmdv1.Member, error)
	// Snapshot opens a point-in-time view for a backup.
	Snapshot() (*fsm.Snapshot, error)
	Get(ns, object, key string) (fsm.KeyValue, error)
	BatchGet(ns, object string, keys []string) ([]fsm.KeyValue, error)
	List(ns, object string, r fsm.Range) ([]fsm.KeyValue, bool, error)
	Object(ns, object string) (fsm.ObjectInfo, error)
	Objects(ns, prefix, after string, limit int) ([]fsm.ObjectInfo, bool, error)
	ShardStats() ([]fsm.ShardStat, error)
	// HashAt hashes the replicated state and names the index it covers.
	HashAt() ([]byte, uint64, error)
	Alarm(ns, object, name string) (*raftcmdv1.StoredAlarm, error)
	Alarms(ns string, filter fsm.AlarmFilter, limit, scan int) (fsm.AlarmPage, error)
	DueAlarms(ns string, nowMs int64, limit int) (pending, expired []*raftcmdv1.StoredAlarm, err error)
	LeasedAlarms(ns string, limit int) ([]*raftcmdv1.StoredAlarm, error)
	NextAlarmDue(ns string) (int64, bool)
	// ReleaseMapping hands the resident pages of the state's memory map
	// back to the kernel (memory.go).
	ReleaseMapping() error
}

// Deps are the server's collaborators.
type Deps struct {
	Node  Node
	State State
	// Watch is the change history the FSM feeds (fsm.Options.Observer).
	Watch *WatchHub
	// DataDirs are the directories holding the node's state (the FSM's and
	// Raft's), whose free space is held above Config.MinFreeDiskBytes.
	// Empty means the node does not watch its free space.
	DataDirs []string
}
