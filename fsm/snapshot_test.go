package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"
)

// mustSnapshot captures f and streams the snapshot into memory.
func mustSnapshot(t testing.TB, f *FSM) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer s.Release()
	if s.Index() != f.AppliedIndex() {
		t.Fatalf("snapshot index %d, applied index %d", s.Index(), f.AppliedIndex())
	}
	return mustWriteTo(t, s)
}

func mustWriteTo(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func mustRestore(t testing.TB, f *FSM, snap []byte) {
	t.Helper()
	if err := f.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
}

// Snapshot stream layout, for crafting streams in tests: the header is
// magic, version and index; the trailer is 'E' and a CRC-32C of every byte
// before the checksum.
const snapshotHeaderLen = len(snapshotMagic) + 4 + 8

// withFixedCRC returns a copy of snap whose trailing checksum matches its
// (possibly edited) contents.
func withFixedCRC(snap []byte) []byte {
	b := bytes.Clone(snap)
	binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// craftSnapshot builds a stream from a header and raw record bytes, with a
// correct checksum.
func craftSnapshot(version uint32, index uint64, records []byte) []byte {
	b := []byte(snapshotMagic)
	b = binary.BigEndian.AppendUint32(b, version)
	b = binary.BigEndian.AppendUint64(b, index)
	b = append(b, records...)
	b = append(b, 'E', 0, 0, 0, 0)
	return withFixedCRC(b)
}

// randomLog returns n commands of a random but seeded workload over a few
// namespaces and objects: batches of puts and deletes, object deletes,
// namespace churn and quota changes, members, and commands that the FSM
// rejects. A nil command stands for an entry without data.
func randomLog(seed int64, n int) []*raftcmdv1.Command {
	rng := rand.New(rand.NewSource(seed))
	namespaces := []string{"alpha", "beta", "gamma"}
	objects := []string{"o1", "o2", "o3", "o/4", "é 5"}
	keys := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "dir/a", "dir/b", "é", "日本", "\U0010FFFF"}
	value := func() string {
		b := make([]byte, rng.Intn(40))
		for i := range b {
			b[i] = byte(rng.Intn(256))
		}
		return string(b)
	}
	cmds := []*raftcmdv1.Command{
		cmdPutNamespace("alpha", 0),
		cmdPutNamespace("beta", 150),
		cmdPutNamespace("gamma", 0),
	}
	for len(cmds) < n {
		ns := namespaces[rng.Intn(len(namespaces))]
		obj := objects[rng.Intn(len(objects))]
		var cmd *raftcmdv1.Command
		switch p := rng.Intn(100); {
		case p < 55: // a batch of distinct keys
			perm := rng.Perm(len(keys))
			nPuts, nDels := rng.Intn(5), rng.Intn(3)
			if nPuts+nDels == 0 {
				nPuts = 1
			}
			var puts []*raftcmdv1.KeyPut
			for _, i := range perm[:nPuts] {
				kp := kput(keys[i], value())
				if rng.Intn(4) == 0 {
					kp.Encoding = raftcmdv1.ValueEncoding_VALUE_ENCODING_JSON
				}
				puts = append(puts, kp)
			}
			var dels []string
			for _, i := range perm[nPuts : nPuts+nDels] {
				dels = append(dels, keys[i])
			}
			cmd = cmdBatch(ns, obj, puts, dels...)
		case p < 70:
			cmd = cmdDel(ns, obj, keys[rng.Intn(len(keys))], keys[rng.Intn(len(keys))]) // may repeat a key: rejected
		case p < 75:
			cmd = cmdDeleteObject(ns, obj)
		case p < 76:
			cmd = cmdDeleteNamespace(ns, rng.Intn(2) == 0) // without force: rejected unless empty
		case p < 85:
			cmd = cmdPutNamespace(ns, uint64(rng.Intn(3))*100) // creates again after a delete
		case p < 89:
			cmd = cmdSetMember(fmt.Sprintf("m%d", rng.Intn(4)), fmt.Sprintf("10.0.0.%d:7000", rng.Intn(256)), "g", "h")
		case p < 92:
			cmd = cmdRemoveMember(fmt.Sprintf("m%d", rng.Intn(4)))
		case p < 95:
			cmd = cmdPut("nope", obj, "k", "v") // namespace never exists
		default:
			cmd = nil
		}
		if cmd != nil && rng.Intn(10) == 0 {
			cmd.TimeUnixMs = baseTimeMs + int64(rng.Intn(100000)) // a leader with a slow clock
		}
		cmds = append(cmds, cmd)
	}
	return cmds
}

// logEntries encodes cmds as entries 1, 2, ...; nil commands become
// entries without data.
func logEntries(t testing.TB, cmds []*raftcmdv1.Command) []Entry {
	t.Helper()
	entries := make([]Entry, len(cmds))
	for i, c := range cmds {
		idx := uint64(i + 1)
		entries[i] = Entry{Index: idx}
		if c != nil {
			entries[i].Data = mustEncode(t, idx, c)
		}
	}
	return entries
}

// applyInBatches applies entries in batches of the given sizes (cycling)
// and returns every entry's result.
func applyInBatches(t testing.TB, f *FSM, entries []Entry, sizes func() int) []Result {
	t.Helper()
	var out []Result
	for len(entries) > 0 {
		n := min(sizes(), len(entries))
		out = append(out, mustApplyBatch(t, f, entries[:n])...)
		entries = entries[n:]
	}
	return out
}

func sameResult(a, b Result) bool {
	if (a.Err == nil) != (b.Err == nil) || a.Err != nil && a.Err.Error() != b.Err.Error() {
		return false
	}
	return proto.Equal(a.Result, b.Result)
}

// Replicas that apply the same log, however Raft batches it, reach the same
// bytes.
func TestSameLogSameState(t *testing.T) {
	const n = 600
	entries := logEntries(t, randomLog(42, n))

	one := mustNew(t)
	resOne := applyInBatches(t, one, entries, func() int { return 1 })
	rng := rand.New(rand.NewSource(9))
	random := mustNew(t)
	resRandom := applyInBatches(t, random, entries, func() int { return 1 + rng.Intn(64) })
	whole := mustNew(t)
	resWhole := applyInBatches(t, whole, entries, func() int { return n })

	var rejected, applied int
	for i := range entries {
		if !sameResult(resOne[i], resRandom[i]) || !sameResult(resOne[i], resWhole[i]) {
			t.Fatalf("entry %d answered differently: %+v / %+v / %+v", i+1, resOne[i], resRandom[i], resWhole[i])
		}
		if resOne[i].Err != nil {
			rejected++
		} else if resOne[i].Result != nil {
			applied++
		}
	}
	// The workload must exercise both paths to mean anything.
	if rejected < n/20 || applied < n/2 {
		t.Fatalf("workload too tame: %d applied, %d rejected of %d", applied, rejected, n)
	}
	mustConsistent(t, one)

	hash := mustHash(t, one)
	snap := mustSnapshot(t, one)
	state := dumpState(t, one)
	for name, f := range map[string]*FSM{"random batches": random, "one batch": whole} {
		if f.AppliedIndex() != n || f.Now() != one.Now() {
			t.Fatalf("%s: applied %d now %d, want %d and %d", name, f.AppliedIndex(), f.Now(), n, one.Now())
		}
		if !bytes.Equal(hash, mustHash(t, f)) {
			t.Fatalf("%s: hash differs", name)
		}
		if !bytes.Equal(snap, mustSnapshot(t, f)) {
			t.Fatalf("%s: snapshot stream differs", name)
		}
		if got := dumpState(t, f); got != state {
			t.Fatalf("%s: state differs:\n%s\nwant\n%s", name, got, state)
		}
	}
	// A different log gives a different hash.
	other := mustNew(t)
	applyInBatches(t, other, logEntries(t, randomLog(43, n)), func() int { return 100 })
	if bytes.Equal(hash, mustHash(t, other)) {
		t.Fatalf("two different logs hash the same")
	}
}

func TestSnapshotRestore(t *testing.T) {
	entries := logEntries(t, randomLog(7, 400))
	src := mustNew(t)
	applyInBatches(t, src, entries[:300], func() int { return 10 })
	snap := mustSnapshot(t, src)
	if !bytes.HasPrefix(snap, []byte(snapshotMagic)) {
		t.Fatalf("snapshot does not start with the magic: %q", snap[:min(len(snap), 16)])
	}

	dstDir := t.TempDir()
	dst := mustOpen(t, dstDir)
	mustRestore(t, dst, snap)
	mustSameState(t, dst, src)
	if !bytes.Equal(snap, mustSnapshot(t, dst)) {
		t.Fatalf("snapshot of the restored FSM differs from the one it was restored from")
	}
	mustConsistent(t, dst)
	if _, err := os.Stat(filepath.Join(dstDir, dbFile+".restore")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("restore left its temporary file behind: %v", err)
	}

	// Both go on with the rest of the log and stay equal; the restored one
	// skips what the snapshot already holds.
	mustApplyBatch(t, dst, entries[250:300])
	if dst.Applies() != 0 {
		t.Fatalf("restored FSM re-applied %d entries from before its snapshot", dst.Applies())
	}
	applyInBatches(t, src, entries[300:], func() int { return 7 })
	applyInBatches(t, dst, entries[300:], func() int { return 33 })
	mustSameState(t, dst, src)

	// The restored state survives a restart.
	if err := dst.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mustSameState(t, mustOpen(t, dstDir), src)
}

// Restore replaces whatever the target held, even a later state.
func TestRestoreReplacesState(t *testing.T) {
	src := mustNew(t)
	mustApply(t, src, cmdPutNamespace("src", 0), cmdPut("src", "o", "k", "v"))
	snap := mustSnapshot(t, src)

	dst := mustNew(t)
	mustApply(t, dst, cmdPutNamespace("dst", 0), cmdPutNamespace("src", 5))
	applyInBatches(t, dst, logEntries(t, randomLog(3, 200))[2:], func() int { return 50 })
	mustApply1(t, dst, cmdSetMember("only-in-dst", "r", "g", "h"))

	mustRestore(t, dst, snap)
	mustSameState(t, dst, src)
	if _, err := dst.Namespace("dst"); !errors.Is(err, ErrNamespaceNotFound) {
		t.Fatalf("namespace of the replaced state survived the restore: %v", err)
	}
	if ms := mustMembers(t, dst); len(ms) != 0 {
		t.Fatalf("members of the replaced state survived the restore: %v", ms)
	}

	// An empty FSM's snapshot empties the target.
	mustRestore(t, dst, mustSnapshot(t, mustNew(t)))
	if dst.AppliedIndex() != 0 || len(mustNamespaces(t, dst)) != 0 || !bytes.Equal(mustHash(t, dst), mustHash(t, mustNew(t))) {
		t.Fatalf("restoring an empty snapshot left state behind")
	}
}

// mustSameState checks that got holds what want holds, as far as every
// query and the hash can tell.
func mustSameState(t testing.TB, got, want *FSM) {
	t.Helper()
	if got.AppliedIndex() != want.AppliedIndex() {
		t.Fatalf("applied index %d, want %d", got.AppliedIndex(), want.AppliedIndex())
	}
	if !bytes.Equal(mustHash(t, got), mustHash(t, want)) {
		t.Fatalf("hash differs")
	}
	if g, w := dumpState(t, got), dumpState(t, want); g != w {
		t.Fatalf("state differs:\n%s\nwant\n%s", g, w)
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	src := mustNew(t)
	applyInBatches(t, src, logEntries(t, randomLog(11, 120)), func() int { return 20 })
	good := mustSnapshot(t, src)
	mid := len(good) / 2

	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0xff; return b }
	edit := func(fn func(b []byte)) []byte { b := bytes.Clone(good); fn(b); return b }
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"flipped byte in the middle", flip(mid)},
		{"flipped byte in the header index", flip(snapshotHeaderLen - 1)},
		{"flipped first record tag", flip(snapshotHeaderLen)},
		{"flipped trailer tag", flip(len(good) - 5)},
		{"flipped checksum", flip(len(good) - 1)},
		{"one bit off in the middle", edit(func(b []byte) { b[mid] ^= 0x01 })},
		{"truncated in the magic", good[:3]},
		{"truncated in the header", good[:snapshotHeaderLen-1]},
		{"header only", good[:snapshotHeaderLen]},
		{"truncated in the middle", good[:mid]},
		{"truncated in the checksum", good[:len(good)-2]},
		{"truncated before the trailer", good[:len(good)-5]},
		{"wrong magic", edit(func(b []byte) { copy(b, "CAIRNSNQ") })},
		{"wrong magic, checksum fixed", withFixedCRC(edit(func(b []byte) { copy(b, "cairnsnp") }))},
		{"other file", []byte("SQLite format 3\x00 and then some more bytes of another file")},
		{"wrong version, checksum fixed", withFixedCRC(edit(func(b []byte) {
			binary.BigEndian.PutUint32(b[len(snapshotMagic):], SnapshotVersion+1)
		}))},
		{"version 0, checksum fixed", withFixedCRC(edit(func(b []byte) {
			binary.BigEndian.PutUint32(b[len(snapshotMagic):], 0)
		}))},
		{"garbage appended to a truncated stream", append(bytes.Clone(good[:mid]), bytes.Repeat([]byte{0xaa}, 100)...)},
		{"unknown record tag", craftSnapshot(SnapshotVersion, 0, []byte{'X', 1, 'a'})},
		{"record before any bucket", craftSnapshot(SnapshotVersion, 0, []byte{'R', 1, 'k', 1, 'v'})},
		{"record with an empty key", craftSnapshot(SnapshotVersion, 0, []byte{'B', 1, 'x', 'R', 0, 1, 'v'})},
		{"length past the end", craftSnapshot(SnapshotVersion, 0, []byte{'B', 100, 'x'})},
	}
	// And a byte flipped at a spread of offsets.
	for i := 1; i < 16; i++ {
		off := snapshotHeaderLen + (len(good)-snapshotHeaderLen)*i/16
		tests = append(tests, struct {
			name string
			data []byte
		}{fmt.Sprintf("flipped byte at %d", off), flip(off)})
	}

	dir := t.TempDir()
	dst := mustOpen(t, dir)
	mustApply(t, dst, cmdPutNamespace("mine", 0), cmdPut("mine", "o", "k", "v"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantState, wantHash := dumpState(t, dst), mustHash(t, dst)
			err := dst.Restore(bytes.NewReader(tt.data))
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("Restore = %v, want ErrBadSnapshot", err)
			}
			if !bytes.Equal(wantHash, mustHash(t, dst)) || dumpState(t, dst) != wantState {
				t.Fatalf("failed restore changed the state:\n%s\nwant\n%s", dumpState(t, dst), wantState)
			}
			if _, err := os.Stat(filepath.Join(dir, dbFile+".restore")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("failed restore left its temporary file behind: %v", err)
			}
			// The FSM still works.
			mustApply1(t, dst, cmdPut("mine", "o", "k", tt.name))
		})
	}
	// After all that, the good snapshot still restores.
	mustRestore(t, dst, good)
	mustSameState(t, dst, src)
}

// A reader that fails part-way makes Restore fail and change nothing.
func TestRestoreReadError(t *testing.T) {
	src := mustNew(t)
	applyInBatches(t, src, logEntries(t, randomLog(5, 100)), func() int { return 100 })
	good := mustSnapshot(t, src)
	dst := mustNew(t)
	mustApply1(t, dst, cmdSetMember("m", "r", "g", "h"))
	want := dumpState(t, dst)
	boom := errors.New("disk on fire")
	err := dst.Restore(io.MultiReader(bytes.NewReader(good[:len(good)/2]), &failingReader{err: boom}))
	if err == nil {
		t.Fatalf("Restore from a failing reader succeeded")
	}
	if got := dumpState(t, dst); got != want {
		t.Fatalf("failed restore changed the state:\n%s\nwant\n%s", got, want)
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }

// The stream holds the state as it was when Snapshot was called, whatever
// is applied while it is written.
func TestSnapshotIsolation(t *testing.T) {
	f := mustNew(t)
	entries := logEntries(t, randomLog(21, 300))
	applyInBatches(t, f, entries[:150], func() int { return 25 })
	wantHash, wantState := mustHash(t, f), dumpState(t, f)

	s, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer s.Release()
	applyInBatches(t, f, entries[150:], func() int { return 25 })
	mustApply(t, f, cmdPutNamespace("late", 0), cmdPut("late", "o", "k", "v"))
	if s.Index() != 150 {
		t.Fatalf("snapshot index %d after later applies, want 150", s.Index())
	}
	snap := mustWriteTo(t, s)

	g := mustNew(t)
	mustRestore(t, g, snap)
	if g.AppliedIndex() != 150 || !bytes.Equal(wantHash, mustHash(t, g)) || dumpState(t, g) != wantState {
		t.Fatalf("restored snapshot holds later writes: applied %d\n%s\nwant\n%s", g.AppliedIndex(), dumpState(t, g), wantState)
	}
	// Writing the same snapshot again gives the same bytes.
	if again := mustWriteTo(t, s); !bytes.Equal(snap, again) {
		t.Fatalf("second WriteTo of one snapshot differs")
	}
	// A snapshot taken now has the later writes.
	if later := mustSnapshot(t, f); bytes.Equal(later, snap) {
		t.Fatalf("snapshot after more writes equals the earlier one")
	}
}

func TestSnapshotWriteError(t *testing.T) {
	f := mustNew(t)
	applyInBatches(t, f, logEntries(t, randomLog(1, 100)), func() int { return 100 })
	s, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer s.Release()
	boom := errors.New("sink full")
	if _, err := s.WriteTo(&failingWriter{err: boom}); !errors.Is(err, boom) {
		t.Fatalf("WriteTo to a failing writer = %v, want %v", err, boom)
	}
}

type failingWriter struct{ err error }

func (w *failingWriter) Write([]byte) (int, error) { return 0, w.err }

// Queries running while entries apply and snapshots restore see whole
// batches and whole states: never half of one, never a closed database.
func TestQueriesDuringApplyAndRestore(t *testing.T) {
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	// Every write sets a and b of n/pair to the same value in one batch.
	pair := func(v int) *raftcmdv1.Command {
		s := fmt.Sprint(v)
		return cmdPut("n", "pair", "a", s, "b", s)
	}
	mustApply1(t, f, pair(0))
	early := mustSnapshot(t, f)

	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				kvs, err := f.BatchGet("n", "pair", []string{"a", "b"})
				if err != nil {
					errs <- fmt.Errorf("BatchGet: %w", err)
					return
				}
				if len(kvs) != 2 || !bytes.Equal(kvs[0].Value, kvs[1].Value) || kvs[0].ModRevision != kvs[1].ModRevision {
					errs <- fmt.Errorf("saw half a batch: %+v", kvs)
					return
				}
				if _, err := f.Hash(); err != nil {
					errs <- fmt.Errorf("Hash: %w", err)
					return
				}
			}
		}()
	}
	for i := 1; i <= 300; i++ {
		mustApply1(t, f, pair(i))
		if i%100 == 0 {
			mustRestore(t, f, early)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestRestoreWithSnapshotOpen: Restore does not wait for the snapshots
// that are open on the state it replaces. Raft's snapshot goroutine holds
// its FSM snapshot while it asks Raft's main goroutine for the
// configuration, and the main goroutine waits for the FSM's restore when
// it installs a snapshot from the leader: a Restore that waited for the
// open snapshot deadlocked the follower for good (found by the
// fault-injection harness, test/chaos: a follower restarted while the log
// was compacted never caught up again). The open snapshot stays readable,
// and the replaced database closes when it is released.
func TestRestoreWithSnapshotOpen(t *testing.T) {
	entries := logEntries(t, randomLog(3, 200))
	src := mustNew(t)
	applyInBatches(t, src, entries, func() int { return 10 })
	newer := mustSnapshot(t, src)

	f := mustNew(t)
	applyInBatches(t, f, entries[:100], func() int { return 10 })
	want := mustSnapshot(t, f)
	open, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	old := f.db
	done := make(chan error, 1)
	go func() { done <- f.Restore(bytes.NewReader(newer)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Restore: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Restore waits for a snapshot that is still open")
	}
	mustSameState(t, f, src)
	if got := mustWriteTo(t, open); !bytes.Equal(got, want) {
		t.Fatal("the snapshot open during Restore changed")
	}
	open.Release()
	if err := old.View(func(*bolt.Tx) error { return nil }); !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Fatalf("the replaced database after its last snapshot's release: %v, want it closed", err)
	}
	// Without open snapshots, Restore closes the replaced database itself.
	before := f.db
	mustRestore(t, f, newer)
	if err := before.View(func(*bolt.Tx) error { return nil }); !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Fatalf("the replaced database: %v, want it closed", err)
	}
}
