package fsm

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Compatibility between releases (see DESIGN.md, "Versions and upgrades").
// Every replica must apply every entry the same way, so a node never
// applies a command it does not fully understand: a command with fields
// this build does not know stops the node (ApplyBatch panics), and the
// leader refuses to propose a command type that some member does not
// apply (the server asks each member for its CommandTypes).

// baseCommandTypes are the command types (field numbers of Command's op)
// that every release applies: those of the first release. A member that
// cannot say which types it applies (a release older than that question)
// applies these. Never change this list; a new command type is added to
// command.proto only.
var baseCommandTypes = []int32{10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21}

// BaseCommandTypes returns the command types every release applies.
func BaseCommandTypes() []int32 { return slices.Clone(baseCommandTypes) }

// IsBaseCommandType reports whether every release applies command type typ.
func IsBaseCommandType(typ int32) bool { return slices.Contains(baseCommandTypes, typ) }

// CommandTypes returns the command types (field numbers of Command's op)
// this build applies, in increasing order.
func CommandTypes() []int32 {
	fields := (&raftcmdv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op").Fields()
	types := make([]int32, fields.Len())
	for i := range types {
		types[i] = int32(fields.Get(i).Number())
	}
	slices.Sort(types)
	return types
}

// CommandType returns the type of cmd's op (its field number) and its
// name; 0 and "" when it has none this build knows.
func CommandType(cmd *raftcmdv1.Command) (int32, string) {
	m := cmd.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("op"))
	if fd == nil {
		return 0, ""
	}
	return int32(fd.Number()), string(fd.Name())
}

// CheckCommand returns an error wrapping ErrUnsupportedCommand when cmd
// holds something this build does not know: no op (a command type added
// by a newer release), or a field unknown here anywhere inside it. Such a
// command comes from a newer release, and applying it would make this
// replica's state differ from the others'.
func CheckCommand(cmd *raftcmdv1.Command) error {
	if knownWrite(cmd) {
		return nil
	}
	var unknown []string
	unknownFields(cmd.ProtoReflect(), &unknown)
	if cmd.GetOp() == nil && len(unknown) == 0 {
		unknown = append(unknown, "no operation")
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown) // map entries are visited in no fixed order
	return fmt.Errorf("%w (%s): it comes from a newer cairn release; upgrade this node to that release",
		ErrUnsupportedCommand, strings.Join(unknown, ", "))
}

// knownWrite reports whether cmd is a batch write that holds no field this
// build does not know, checking its messages one by one: the walk by
// reflection below was 5% of a follower's CPU under puts. It covers every
// message a batch write can hold (TestKnownWriteCoversBatchWrite); false
// sends a command to that walk.
func knownWrite(cmd *raftcmdv1.Command) bool {
	w := cmd.GetBatchWrite()
	if w == nil || len(cmd.ProtoReflect().GetUnknown()) > 0 || len(w.ProtoReflect().GetUnknown()) > 0 {
		return false
	}
	for _, p := range w.GetPuts() {
		if len(p.ProtoReflect().GetUnknown()) > 0 {
			return false
		}
	}
	return true
}

// unknownFields appends to out the fields of m, and of every message inside
// it, that this build does not know, as "message.number".
func unknownFields(m protoreflect.Message, out *[]string) {
	for b := m.GetUnknown(); len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			*out = append(*out, fmt.Sprintf("undecodable fields of %s", m.Descriptor().FullName()))
			break
		}
		*out = append(*out, fmt.Sprintf("field %s.%d", m.Descriptor().FullName(), num))
		if l := protowire.ConsumeFieldValue(num, typ, b[n:]); l >= 0 {
			b = b[n+l:]
		} else {
			break
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i, l := 0, v.List(); i < l.Len(); i++ {
				unknownFields(l.Get(i).Message(), out)
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					unknownFields(mv.Message(), out)
					return true
				})
			}
		case fd.Message() != nil:
			unknownFields(v.Message(), out)
		}
		return true
	})
}

// StorageVersion is the version of the state database's layout
// (layout.go) this build reads and writes, recorded in meta/format.
const StorageVersion = storageFormat

// checkStorageFormat refuses, before anything is written to it, a state
// database whose recorded layout this build does not read: one a newer
// release wrote (downgrades are not supported), or a damaged record.
func checkStorageFormat(db *bolt.DB, path string) error {
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil // a new database
		}
		v := meta.Get(metaFormat)
		switch {
		case v == nil:
			return nil
		case len(v) != 4:
			return fmt.Errorf("fsm: %s records a storage format of %d bytes (%x), not 4: it is damaged or not a cairn state database", path, len(v), v)
		case binary.BigEndian.Uint32(v) > storageFormat:
			return fmt.Errorf("fsm: %s has storage format %d, written by a newer cairn release; this build reads format %d: run that release or a newer one (downgrades are not supported)",
				path, binary.BigEndian.Uint32(v), storageFormat)
		case binary.BigEndian.Uint32(v) != storageFormat:
			return fmt.Errorf("fsm: %s has storage format %d, which this build does not read (it reads format %d)", path, binary.BigEndian.Uint32(v), storageFormat)
		}
		return nil
	})
}
