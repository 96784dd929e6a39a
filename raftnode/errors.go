package raftnode

import "errors"

// Errors of the Raft layer. Domain results of the state machine (see
// package fsm) are returned unchanged next to these.
var (
	// ErrNotLeader: this node is not the leader; nothing was appended, so
	// the request may be sent to the leader.
	ErrNotLeader = errors.New("raftnode: not the leader")
	// ErrLeadershipLost: leadership was lost after the command was
	// appended; it may or may not be committed.
	ErrLeadershipLost = errors.New("raftnode: leadership lost while the command was in flight")
	// ErrTimeout: the command or read was not done in time.
	ErrTimeout = errors.New("raftnode: timed out")
	// ErrShutdown: the node is shutting down.
	ErrShutdown = errors.New("raftnode: shut down")
	// ErrLogStorage: the leader could not write the command to its Raft log
	// (a full disk, an I/O error); it stepped down, and nothing was
	// committed.
	ErrLogStorage = errors.New("raftnode: cannot write the Raft log")
	// ErrUnknownServer: no cluster member has that id.
	ErrUnknownServer = errors.New("raftnode: unknown server")
)
