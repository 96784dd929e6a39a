package fsm

import (
	"bytes"
	"errors"
	"testing"
)

func mustBackupBytes(t *testing.T, f *FSM, term uint64) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	var buf bytes.Buffer
	n, err := WriteBackup(&buf, s, term)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteBackup: %d bytes, %v (wrote %d)", n, err, buf.Len())
	}
	return buf.Bytes()
}

// TestBackupVerify: a backup file verifies and restores to the same state;
// every flipped bit, every truncation and any trailing byte is refused.
func TestBackupVerify(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("ns", 0), cmdPut("ns", "o1", "a", `"x"`, "b", `{"y":1}`), cmdPut("ns", "o2", "c", `[1,2,3]`),
		cmdSetMember("n1", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"))
	data := mustBackupBytes(t, f, 7)
	info, err := VerifyBackup(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("VerifyBackup: %v", err)
	}
	if info.Index != f.AppliedIndex() || info.Term != 7 || info.Size != int64(len(data)) {
		t.Fatalf("VerifyBackup = %+v; want index %d, term 7, size %d", info, f.AppliedIndex(), len(data))
	}
	g := mustNew(t)
	if err := g.Restore(BackupSnapshot(bytes.NewReader(data), info.Size)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !bytes.Equal(mustHash(t, f), mustHash(t, g)) || g.AppliedIndex() != info.Index {
		t.Fatalf("restored state differs")
	}
	if again := mustBackupBytes(t, g, 7); !bytes.Equal(again, data) {
		t.Fatalf("a backup of the restored state is not byte for byte the same")
	}

	for i := range data {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(data)
			bad[i] ^= bit
			if _, err := VerifyBackup(bytes.NewReader(bad)); !errors.Is(err, ErrBadBackup) {
				t.Fatalf("byte %d ^ %#x: VerifyBackup = %v, want ErrBadBackup", i, bit, err)
			}
		}
	}
	for n := range len(data) {
		if _, err := VerifyBackup(bytes.NewReader(data[:n])); !errors.Is(err, ErrBadBackup) {
			t.Fatalf("truncated to %d of %d bytes: VerifyBackup = %v, want ErrBadBackup", n, len(data), err)
		}
	}
	if _, err := VerifyBackup(bytes.NewReader(append(bytes.Clone(data), 0))); !errors.Is(err, ErrBadBackup) {
		t.Fatalf("trailing byte: VerifyBackup = %v, want ErrBadBackup", err)
	}
}

type restoredLog struct{ restored []uint64 }

func (r *restoredLog) Committed(uint64, []ChangeSet) {}
func (r *restoredLog) Restored(index uint64)         { r.restored = append(r.restored, index) }

// TestCoverIndex: covering a later index moves the applied index and tells
// the observer the state restarts there; covering an older one does
// nothing.
func TestCoverIndex(t *testing.T) {
	obs := &restoredLog{}
	f, err := Open(Options{Dir: t.TempDir(), NoSync: true, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mustApply(t, f, cmdPutNamespace("ns", 0))
	at := f.AppliedIndex()
	before := mustHash(t, f)
	for _, i := range []uint64{at, at + 100} {
		if err := f.CoverIndex(i); err != nil {
			t.Fatal(err)
		}
	}
	if f.AppliedIndex() != at+100 || len(obs.restored) != 1 || obs.restored[0] != at+100 {
		t.Fatalf("applied %d, observer told %v; want %d once", f.AppliedIndex(), obs.restored, at+100)
	}
	if !bytes.Equal(mustHash(t, f), before) {
		t.Fatalf("CoverIndex changed the state")
	}
}
