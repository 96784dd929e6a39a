package raftnode

import (
	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
)

// A build with the benchceiling tag (ceiling_on.go) acknowledges batch
// writes without applying them: every node answers a put as if its state
// machine cost nothing. It measures how fast writes could be with the rest
// of the path as it is (gRPC, Raft, the log's syncs), so that benchmarks can
// tell what a cheaper state machine could gain (docs/benchmarks.md). It
// loses the writes it acknowledges, and its FSM's applied index stays
// behind Raft's (a node restarted under it applies the log again): start
// its clusters afresh, and build nothing else with it.

// ackWrites answers logs as applied batch writes without applying them,
// when they hold a batch write and no other command; ok is false
// otherwise, and those logs must be applied as usual (also a command the
// FSM would stop at, so that this build stops there too).
func ackWrites(logs []*raft.Log) (out []interface{}, ok bool) {
	out = make([]interface{}, len(logs))
	writes := 0
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			out[i] = fsm.Result{}
			continue
		}
		if cmd, err := fsm.DecodeCommand(l.Data); err != nil || cmd.GetBatchWrite() == nil {
			return nil, false
		}
		out[i] = fsm.Result{Result: &raftcmdv1.Result{Revision: l.Index,
			Result: &raftcmdv1.Result_BatchWrite{BatchWrite: &raftcmdv1.BatchWriteResult{}}}}
		writes++
	}
	return out, writes > 0
}
