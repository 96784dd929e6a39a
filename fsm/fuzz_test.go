package fsm

import (
	"bytes"
	"encoding/binary"
	"flag"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
)

// FuzzRestore feeds arbitrary bytes to Restore. It must never panic, and a
// stream it refuses must leave the FSM as it was.
func FuzzRestore(f *testing.F) {
	boundMinimizeTime(f, "2s")
	src := mustNew(f)
	mustApply(f, src,
		cmdPutNamespace("n", 0),
		cmdPut("n", "o", "a", "1", "é", "2"),
		cmdSetMember("m", "r", "g", "h"),
	)
	good := mustSnapshot(f, src)
	f.Add(good)
	f.Add(mustSnapshot(f, mustNew(f)))
	f.Add([]byte{})
	f.Add(good[:snapshotHeaderLen])
	f.Add(good[:len(good)/2])
	f.Add(craftSnapshot(SnapshotVersion, 0, []byte{'B', 1, 'x', 'R', 1, 'k', 1, 'v'}))
	f.Add(craftSnapshot(SnapshotVersion, 0, nil))

	// One target for every input: opening an FSM per input would cost more
	// than the restore itself. A stream that restores replaces its state,
	// so what must not change is read afresh each time.
	dst := mustNew(f)
	mustApply(f, dst, cmdPutNamespace("mine", 0), cmdPut("mine", "o", "k", "v"))

	f.Fuzz(func(t *testing.T, data []byte) {
		wantHash, wantIndex := mustHash(t, dst), dst.AppliedIndex()
		if err := dst.Restore(bytes.NewReader(data)); err != nil {
			if !bytes.Equal(wantHash, mustHash(t, dst)) || dst.AppliedIndex() != wantIndex {
				t.Fatalf("Restore failed (%v) but changed the state", err)
			}
			return
		}
		// A stream that restores is a state every query can read.
		if dst.AppliedIndex() != binary.BigEndian.Uint64(data[len(snapshotMagic)+4:]) {
			t.Fatalf("applied index %d does not match the header", dst.AppliedIndex())
		}
		mustHash(t, dst)
		mustShardStats(t, dst)
		mustNamespaces(t, dst)
		mustMembers(t, dst)
		mustSnapshot(t, dst)
	})
}

// FuzzDecodeRecords checks that the stored-record decoders never panic on
// arbitrary bytes, that what they decode encodes and decodes back to the
// same record, and that every record encodes and decodes to itself.
func FuzzDecodeRecords(f *testing.F) {
	f.Add([]byte{}, uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), []byte{})
	f.Add(keyRecord{encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_JSON, createRevision: 3, modRevision: 9, value: []byte(`{"a":1}`)}.encode(),
		uint64(1), uint64(2), uint64(3), uint64(4), uint8(1), []byte("value"))
	f.Add(objectRecord{revision: 1 << 40, createRevision: 5, keys: 300, bytes: 1 << 20}.encode(),
		uint64(1<<63), uint64(1<<64-1), uint64(127), uint64(128), uint8(2), []byte(nil))
	f.Add(shardStat{objects: 1, bytes: 1<<64 - 1}.encode(), uint64(0), uint64(0), uint64(0), uint64(0), uint8(255), []byte{0})
	f.Add([]byte{recordVersion, 0x80}, uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), []byte{})
	f.Add([]byte{recordVersion, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, uint64(0), uint64(0), uint64(0), uint64(0), uint8(0), []byte{})

	f.Fuzz(func(t *testing.T, data []byte, a, b, c, d uint64, enc uint8, value []byte) {
		// Arbitrary bytes: no panic, and a decoded record survives a round
		// trip.
		if k, err := decodeKeyRecord(data); err == nil {
			k2, err := decodeKeyRecord(k.encode())
			if err != nil || !equalKeyRecords(k, k2) {
				t.Fatalf("key record %+v re-decoded as %+v, %v", k, k2, err)
			}
			if !bytes.HasSuffix(data, k.value) {
				t.Fatalf("decoded value %q is not the tail of %q", k.value, data)
			}
		}
		if o, err := decodeObjectRecord(data); err == nil {
			if o2, err := decodeObjectRecord(o.encode()); err != nil || o2 != o {
				t.Fatalf("object record %+v re-decoded as %+v, %v", o, o2, err)
			}
		}
		if s, err := decodeShardStat(data); err == nil {
			if s2, err := decodeShardStat(s.encode()); err != nil || s2 != s {
				t.Fatalf("shard stat %+v re-decoded as %+v, %v", s, s2, err)
			}
		}

		// Arbitrary records: encode then decode is the identity.
		k := keyRecord{encoding: raftcmdv1.ValueEncoding(enc), createRevision: a, modRevision: b, value: value}
		if got, err := decodeKeyRecord(k.encode()); err != nil || !equalKeyRecords(got, k) {
			t.Fatalf("key record %+v round-tripped to %+v, %v", k, got, err)
		}
		o := objectRecord{revision: a, createRevision: b, keys: c, bytes: d}
		if got, err := decodeObjectRecord(o.encode()); err != nil || got != o {
			t.Fatalf("object record %+v round-tripped to %+v, %v", o, got, err)
		}
		s := shardStat{objects: c, bytes: d}
		if got, err := decodeShardStat(s.encode()); err != nil || got != s {
			t.Fatalf("shard stat %+v round-tripped to %+v, %v", s, got, err)
		}
		// A record cut short never decodes into something else silently:
		// dropping the last byte of an object record loses its last field.
		enc2 := o.encode()
		if _, err := decodeObjectRecord(enc2[:len(enc2)-1]); err == nil {
			t.Fatalf("truncated object record %x decoded without error", enc2[:len(enc2)-1])
		}
	})
}

func equalKeyRecords(a, b keyRecord) bool {
	return a.encoding == b.encoding && a.createRevision == b.createRevision && a.modRevision == b.modRevision && bytes.Equal(a.value, b.value)
}

// boundMinimizeTime lowers -fuzzminimizetime to d unless the command line
// set it. A restore takes milliseconds and the inputs grown from a real
// snapshot are kilobytes, so minimizing each new input for the default 60 s
// would stall a short -fuzztime run (workers report 0 execs/s, and Go
// 1.26's coordinator then sometimes fails the target with "context
// deadline exceeded", go.dev/issue/75804).
func boundMinimizeTime(f *testing.F, d string) {
	const name = "test.fuzzminimizetime"
	set := false
	flag.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	if !set && flag.Lookup(name) != nil {
		if err := flag.Set(name, d); err != nil {
			f.Fatalf("set -%s: %v", name, err)
		}
	}
}
