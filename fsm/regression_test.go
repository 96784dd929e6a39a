package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/encoding/protowire"
)

// BUG 1: apply_storage.go:73 converts the uint64 quota to int64.
func TestBugQuotaAboveMaxInt64(t *testing.T) {
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", math.MaxUint64)) // or anything >= 1<<63
	mustApply1(t, f, cmdPut("n", "o", "k", "v"))           // fails: ErrQuotaExceeded, "would hold 2 bytes"
}

// BUG 2a: Restore swaps the database in before it checks the header index.
func TestBugRestoreIndexMismatchReplacesState(t *testing.T) {
	src := mustNew(t)
	mustApply(t, src, cmdPutNamespace("src", 0), cmdPut("src", "o", "k", "v"))
	snap := bytes.Clone(mustSnapshot(t, src))
	binary.BigEndian.PutUint64(snap[len(snapshotMagic)+4:], 99) // header says 99, meta says 2
	snap = withFixedCRC(snap)

	dst := mustNew(t)
	mustApply(t, dst, cmdPutNamespace("dst", 0))
	want := mustHash(t, dst)
	err := dst.Restore(bytes.NewReader(snap))
	if !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("Restore = %v", err)
	}
	if !bytes.Equal(want, mustHash(t, dst)) || dst.AppliedIndex() != 1 { // fails: state and index are src's
		t.Fatalf("failed restore replaced the state (applied %d)", dst.AppliedIndex())
	}
}

// BUG 2b: a stream whose meta records another storage format is swapped in,
// fails to open, and leaves the FSM closed with its old state gone.
func TestBugRestoreBadFormatClosesFSM(t *testing.T) {
	rec := []byte{'B', 4, 'm', 'e', 't', 'a', 'R', 6}
	rec = append(rec, "format"...)
	rec = append(rec, 4, 0, 0, 0, 9)
	dst := mustNew(t)
	mustApply(t, dst, cmdPutNamespace("dst", 0))
	err := dst.Restore(bytes.NewReader(craftSnapshot(SnapshotVersion, 0, rec)))
	t.Logf("Restore = %v (ErrBadSnapshot: %v)", err, errors.Is(err, ErrBadSnapshot))
	if _, err := dst.Hash(); err != nil { // fails: fsm: closed
		t.Fatalf("after failed restore: %v", err)
	}
}

// BUG 3: snapshot.go:210/225 return bbolt's bucket errors unwrapped.
func TestBugRestoreEmptyBucketNameNotBadSnapshot(t *testing.T) {
	err := mustNew(t).Restore(bytes.NewReader(craftSnapshot(SnapshotVersion, 0, []byte{'B', 0})))
	if !errors.Is(err, ErrBadSnapshot) { // fails: "bucket name required"
		t.Fatalf("Restore = %v, want ErrBadSnapshot", err)
	}
}

// BUG 4: snapshot.go:197-200 allocate the claimed length before reading it.
func TestBugRestoreHugeLengthAllocates(t *testing.T) {
	b := []byte(snapshotMagic)
	b = binary.BigEndian.AppendUint32(b, SnapshotVersion)
	b = binary.BigEndian.AppendUint64(b, 0)
	b = append(b, 'B', 4, 'm', 'e', 't', 'a', 'R')
	b = binary.AppendUvarint(b, 1<<31) // 33 bytes in all
	dst := mustNew(t)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := dst.Restore(bytes.NewReader(b))
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 { // fails: 2 GiB allocated
		t.Fatalf("a %d-byte stream allocated %d MiB before it was rejected (%v)", len(b), n>>20, err)
	}
}

// BUG 5: apply.go:101 checks unknown fields of the envelope only.
func TestBugNestedUnknownFieldIgnored(t *testing.T) {
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	cmd := cmdPut("n", "o", "k", "v")
	cmd.GetBatchWrite().Puts[0].ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.VarintType), 60000)) // e.g. a future KeyPut.ttl_ms
	mustPanic(t, func() { f.ApplyBatch(entriesFor(t, f, cmd)) })                                                                            // fails: applied, the field silently dropped
}

// BUG 6 (robustness): apply.go:57-60 skip against the index read at the start of the batch.
func TestBugNonIncreasingIndexesInBatch(t *testing.T) {
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	mustApplyBatch(t, f, []Entry{
		{Index: 5, Data: mustEncode(t, 5, cmdPut("n", "o", "a", "1"))},
		{Index: 3, Data: mustEncode(t, 3, cmdPut("n", "o", "b", "2"))},
	})
	if f.AppliedIndex() != 5 { // fails: 3; entry 3 applied after 5 and index went backwards
		t.Fatalf("applied index %d", f.AppliedIndex())
	}
	_ = raftcmdv1.Command{}
}

// Request expiry must not depend on how entries were batched.
func TestRequestExpiryIndependentOfBatching(t *testing.T) {
	cmds := []*raftcmdv1.Command{cmdPutNamespace("n", 0)}
	for i := 0; i < 600; i++ {
		cmds = append(cmds, withReq(cmdPut("n", "o", "k", fmt.Sprint(i)), fmt.Sprintf("req-%04d", i), 1000, reqT0))
	}
	cmds = append(cmds, atTime(cmdPut("n", "x", "k", "1"), reqT0+5000), atTime(cmdPut("n", "x", "k", "2"), reqT0+5000))
	entries := entriesAt(t, 1, cmds...)
	a, b := mustNew(t), mustNew(t)
	mustApplyBatch(t, a, entries[:601])
	mustApplyBatch(t, a, entries[601:])
	mustApplyBatch(t, b, entries[:601])
	mustApplyBatch(t, b, entries[601:602])
	mustApplyBatch(t, b, entries[602:])
	if !bytes.Equal(mustHash(t, a), mustHash(t, b)) || !bytes.Equal(mustSnapshot(t, a), mustSnapshot(t, b)) {
		t.Fatalf("same log, same index %d: hash/snapshot differ (%d vs %d request records)", a.AppliedIndex(), mustRecords(t, a), mustRecords(t, b))
	}
}

// A request id over MaxRequestIDBytes is refused, not a crash.
func TestLongRequestIDRefused(t *testing.T) {
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	mustReject(t, f, withReq(cmdPut("n", "o", "k", "v"), strings.Repeat("r", 40000), 1000, reqT0), ErrInvalidArgument)
}

// A second open of the same data directory is refused, not blocked.
func TestOpenRefusesLockedDirectory(t *testing.T) {
	dir := t.TempDir()
	f, err := Open(Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if g, err := Open(Options{Dir: dir, NoSync: true}); !errors.Is(err, ErrInUse) {
		if g != nil {
			g.Close()
		}
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
}
