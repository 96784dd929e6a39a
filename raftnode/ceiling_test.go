package raftnode

import (
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

func TestAckWritesOnlyBatchWrites(t *testing.T) {
	entry := func(index uint64, cmd *raftcmdv1.Command) *raft.Log {
		b, err := proto.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return &raft.Log{Index: index, Type: raft.LogCommand, Data: b}
	}
	write := func(index uint64) *raft.Log {
		return entry(index, &raftcmdv1.Command{Version: fsm.CommandVersion, Op: &raftcmdv1.Command_BatchWrite{
			BatchWrite: &raftcmdv1.BatchWrite{Namespace: "ns", Object: "o", Puts: []*raftcmdv1.KeyPut{{Key: "k", Value: []byte("v")}}}}})
	}
	config := &raft.Log{Index: 3, Type: raft.LogConfiguration}

	out, ok := ackWrites([]*raft.Log{write(1), write(2), config})
	if !ok || len(out) != 3 {
		t.Fatalf("batch writes and a configuration entry: ok %v, %d results", ok, len(out))
	}
	for i, want := range []uint64{1, 2} {
		r := out[i].(fsm.Result)
		if r.Err != nil || r.Result.GetRevision() != want || r.Result.GetBatchWrite() == nil {
			t.Errorf("result %d: %v, want a batch write's at revision %d", i, r, want)
		}
	}
	if r := out[2].(fsm.Result); r.Result != nil || r.Err != nil {
		t.Errorf("configuration entry's result: %v, want none", r)
	}

	namespace := entry(5, &raftcmdv1.Command{Version: fsm.CommandVersion, Op: &raftcmdv1.Command_PutNamespace{
		PutNamespace: &raftcmdv1.PutNamespace{Name: "ns"}}})
	txn := entry(7, &raftcmdv1.Command{Version: fsm.CommandVersion, Op: &raftcmdv1.Command_Txn{
		Txn: &raftcmdv1.Txn{Namespace: "ns"}}})
	newer := write(8)
	var cmd raftcmdv1.Command
	if err := proto.Unmarshal(newer.Data, &cmd); err != nil {
		t.Fatal(err)
	}
	cmd.Version++
	var err error
	if newer.Data, err = proto.Marshal(&cmd); err != nil {
		t.Fatal(err)
	}
	for name, logs := range map[string][]*raft.Log{
		"a namespace among writes": {write(4), namespace},
		"a transaction":            {txn, write(9)},
		"a newer envelope":         {write(10), newer},
		"configuration only":       {config},
		"undecodable":              {{Index: 6, Type: raft.LogCommand, Data: []byte{0xff}}},
	} {
		if _, ok := ackWrites(logs); ok {
			t.Errorf("%s: acknowledged without applying", name)
		}
	}
}
