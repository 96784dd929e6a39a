package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// futureCommand encodes what a newer release would propose for a command
// type this build does not have: op field 40, a message holding a string.
func futureCommand(t testing.TB) []byte {
	t.Helper()
	b := mustEncode(t, 1, &raftcmdv1.Command{})
	inner := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "n")
	return protowire.AppendBytes(protowire.AppendTag(b, 40, protowire.BytesType), inner)
}

// TestCheckCommand: commands of every known type pass; a command of a
// newer type, or with a field unknown anywhere inside it, is refused
// with ErrUnsupportedCommand and a message naming what is unknown and
// what to do.
func TestCheckCommand(t *testing.T) {
	for _, cmd := range []*raftcmdv1.Command{cmdPutNamespace("n", 0), cmdPut("n", "o", "k", "v"), cmdRemoveMember("m")} {
		if err := CheckCommand(cmd); err != nil {
			t.Errorf("CheckCommand(%v) = %v", cmd, err)
		}
	}
	future := &raftcmdv1.Command{}
	if err := proto.Unmarshal(futureCommand(t), future); err != nil {
		t.Fatal(err)
	}
	nested := cmdPut("n", "o", "k", "v")
	nested.GetBatchWrite().Puts[0].ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1))
	tests := []struct {
		name string
		cmd  *raftcmdv1.Command
		want string
	}{
		{"no op", &raftcmdv1.Command{Version: CommandVersion}, "(no operation)"},
		{"no command", nil, "(no operation)"},
		{"a newer command type", future, "(field cairn.raftcmd.v1.Command.40)"},
		{"a newer field inside a known type", nested, "(field cairn.raftcmd.v1.KeyPut.9)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCommand(tt.cmd)
			if !errors.Is(err, ErrUnsupportedCommand) {
				t.Fatalf("CheckCommand = %v, want ErrUnsupportedCommand", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || !strings.Contains(msg, "upgrade this node") {
				t.Fatalf("message %q does not name %s and say to upgrade this node", msg, tt.want)
			}
		})
	}
}

// TestKnownWriteCoversBatchWrite: knownWrite, CheckCommand's fast path for
// puts, looks for unknown fields in the command, its batch write and each
// key put. It must see every message a batch write command can hold: a
// message field added to any of them (outside the command's op) has to be
// added there too, or a newer release's field inside it would go unseen.
func TestKnownWriteCoversBatchWrite(t *testing.T) {
	checked := []string{"cairn.raftcmd.v1.Command", "cairn.raftcmd.v1.BatchWrite", "cairn.raftcmd.v1.KeyPut"}
	var reach func(md protoreflect.MessageDescriptor)
	reach = func(md protoreflect.MessageDescriptor) {
		if !slices.Contains(checked, string(md.FullName())) {
			t.Errorf("a batch write command holds %s, which knownWrite does not check", md.FullName())
			return
		}
		for i, fields := 0, md.Fields(); i < fields.Len(); i++ {
			fd := fields.Get(i)
			if o := fd.ContainingOneof(); o != nil && o.Name() == "op" && fd.Name() != "batch_write" {
				continue // another command type: never set beside a batch write
			}
			if fd.IsMap() {
				t.Errorf("%s has a map, which knownWrite does not check", md.FullName())
			} else if fd.Message() != nil {
				reach(fd.Message())
			}
		}
	}
	reach((&raftcmdv1.Command{}).ProtoReflect().Descriptor())

	// An unknown field in any of the three is found.
	for _, at := range []func(*raftcmdv1.Command) protoreflect.Message{
		func(c *raftcmdv1.Command) protoreflect.Message { return c.ProtoReflect() },
		func(c *raftcmdv1.Command) protoreflect.Message { return c.GetBatchWrite().ProtoReflect() },
		func(c *raftcmdv1.Command) protoreflect.Message { return c.GetBatchWrite().Puts[1].ProtoReflect() },
	} {
		cmd := cmdPut("n", "o", "k", "v")
		cmd.GetBatchWrite().Puts = append(cmd.GetBatchWrite().Puts, &raftcmdv1.KeyPut{Key: "k2"})
		if !knownWrite(cmd) {
			t.Fatal("knownWrite refuses a batch write this build knows")
		}
		m := at(cmd)
		m.SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
		err := CheckCommand(cmd)
		if want := fmt.Sprintf("(field %s.99)", m.Descriptor().FullName()); knownWrite(cmd) || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("an unknown field in %s: knownWrite %v, CheckCommand %v, want an error naming %s", m.Descriptor().FullName(), knownWrite(cmd), err, want)
		}
	}
}

// TestApplyStopsOnNewerCommand: an entry of a command type from a newer
// release stops the node (ApplyBatch panics) with a message that says
// which entry, what it did not know and to upgrade, and commits nothing.
func TestApplyStopsOnNewerCommand(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("n", 0))
	hash := mustHash(t, f)
	v := mustPanic(t, func() { f.ApplyBatch([]Entry{{Index: 2, Data: futureCommand(t)}}) })
	want := "fsm: entry 2: command unknown to this build (field cairn.raftcmd.v1.Command.40): " +
		"it comes from a newer cairn release; upgrade this node to that release"
	if v != want {
		t.Fatalf("panic %q, want %q", v, want)
	}
	if f.AppliedIndex() != 1 || !slices.Equal(hash, mustHash(t, f)) {
		t.Fatalf("the refused entry changed the state (applied %d)", f.AppliedIndex())
	}
}

// TestCommandTypes: this build applies every command type of the first
// release, and each type it lists has a handler (the dispatch panics
// otherwise).
func TestCommandTypes(t *testing.T) {
	types := CommandTypes()
	for _, base := range BaseCommandTypes() {
		if !slices.Contains(types, base) || !IsBaseCommandType(base) {
			t.Errorf("this build does not apply command type %d of the first release", base)
		}
	}
	if IsBaseCommandType(40) {
		t.Error("type 40 counts as a base command type")
	}
	op := (&raftcmdv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op")
	for _, typ := range types {
		cmd := &raftcmdv1.Command{}
		fd := op.Fields().ByNumber(protowire.Number(typ))
		cmd.ProtoReflect().Set(fd, cmd.ProtoReflect().NewField(fd))
		if got, name := CommandType(cmd); got != typ || name != string(fd.Name()) {
			t.Errorf("CommandType of a %s command = %d %q", fd.Name(), got, name)
		}
		f := mustNew(t)
		applyCmds(t, f, cmd) // an empty command of each type: a result or a domain error, no panic
	}
}

// TestOpenRefusesNewerStorageFormat: a state database a newer release
// wrote is refused with a message that says so, before anything is
// written to it.
func TestOpenRefusesNewerStorageFormat(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	mustApply(t, f, cmdPutNamespace("n", 0))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, dbFile)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaFormat, []byte{0, 0, 0, StorageVersion + 1})
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "written by a newer cairn release") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a newer storage format: %v, want a refusal naming the file and the newer release", err)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the refused database was changed (%v)", err)
	}
}
