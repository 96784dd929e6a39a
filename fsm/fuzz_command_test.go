package fsm

import (
	"fmt"
	"strings"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeCommand feeds arbitrary bytes to the Raft command decoder.
// decodeCommand stops the node on purpose (a panic whose message starts
// "fsm: entry") for what it must not apply; any other panic is a crash
// on untrusted bytes. What it accepts carries an operation and this
// build's version, has no field this build does not know, and encodes
// and decodes back to itself.
func FuzzDecodeCommand(f *testing.F) {
	for i, cmd := range []*raftcmdv1.Command{
		cmdPutNamespace("n", 10),
		cmdDeleteNamespace("n", true),
		cmdPut("n", "o", "k", "v", "é", "ü"),
		cmdDel("n", "o", "k"),
		cmdDeleteObject("n", "o"),
		cmdSetMember("m", "r", "g", "h"),
		cmdRemoveMember("m"),
		cmdTxn("n", []*raftcmdv1.Compare{{Object: "o", Key: "k"}},
			[]*raftcmdv1.TxnOp{{Op: &raftcmdv1.TxnOp_Put{Put: &raftcmdv1.TxnPut{Object: "o", Put: &raftcmdv1.KeyPut{Key: "k", Value: []byte("v")}}}}}, nil),
	} {
		f.Add(mustEncode(f, uint64(i+1), cmd))
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x02})                   // version 2, no op
	f.Add([]byte{0x08, 0x01, 0xfa, 0x06, 0x00}) // version 1, an unknown field 111
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, stopped := decodeOrStop(t, data)
		if stopped {
			return
		}
		if cmd.Version != CommandVersion || CheckCommand(cmd) != nil {
			t.Fatalf("accepted %x as %v", data, cmd)
		}
		again, err := proto.Marshal(cmd)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, stopped := decodeOrStop(t, again)
		if stopped || !proto.Equal(cmd, back) {
			t.Fatalf("%v does not survive encoding", cmd)
		}
	})
}

// decodeOrStop decodes data as entry 1, reporting a deliberate stop
// instead of panicking, and failing the test on any other panic.
func decodeOrStop(t *testing.T, data []byte) (cmd *raftcmdv1.Command, stopped bool) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			msg := fmt.Sprint(r)
			if !strings.HasPrefix(msg, "fsm: entry 1: ") {
				t.Fatalf("decodeCommand(%x) crashed: %v", data, r)
			}
			stopped = true
		}
	}()
	return decodeCommand(Entry{Index: 1, Data: data}), false
}
