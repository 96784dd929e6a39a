package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// entry returns a distinct entry for index, in term term.
func entry(index, term uint64) *raft.Log {
	l := &raft.Log{Index: index, Term: term, Type: raft.LogType(index % 6), Data: []byte(fmt.Sprintf("data-%d-%s", index, strings.Repeat("x", int(index%50))))}
	if index%3 == 0 {
		l.Extensions = []byte(fmt.Sprintf("ext-%d", index))
	}
	if index%4 != 0 {
		l.AppendedAt = time.Unix(1_700_000_000, int64(index)*1000)
	}
	return l
}

func entries(from, to, term uint64) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		ls = append(ls, entry(i, term))
	}
	return ls
}

func mustOpen(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustStore(t *testing.T, s *Store, ls []*raft.Log) {
	t.Helper()
	if err := s.StoreLogs(ls); err != nil {
		t.Fatalf("store %d..%d: %v", ls[0].Index, ls[len(ls)-1].Index, err)
	}
}

// wantLog checks that s holds exactly the entries first..last of term
// term (as entry makes them), and nothing around them.
func wantLog(t *testing.T, s *Store, first, last uint64, term func(uint64) uint64) {
	t.Helper()
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != first || l != last {
		t.Fatalf("log holds %d..%d, want %d..%d", f, l, first, last)
	}
	for i := first; i <= last && last != 0; i++ {
		var got raft.Log
		if err := s.GetLog(i, &got); err != nil {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
		want := entry(i, term(i))
		if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) ||
			!bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) || got.AppendedAt.IsZero() != want.AppendedAt.IsZero() {
			t.Fatalf("GetLog(%d) = %+v, want %+v", i, got, *want)
		}
	}
	for _, i := range []uint64{first - 1, last + 1} {
		if i == 0 {
			continue
		}
		var got raft.Log
		if err := s.GetLog(i, &got); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) outside the log: %v, want raft.ErrLogNotFound", i, err)
		}
	}
}

func term1(uint64) uint64 { return 1 }

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// TestLogStoreSemantics walks the log through everything Raft does to it
// (appends in batches, head compaction, tail truncation, deleting it all,
// appending after that at another index), across segment rotations, and
// reopens it after every step: what a reopened store holds is what the
// open one held.
func TestLogStoreSemantics(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1024}
	s := mustOpen(t, dir, opts)
	reopen := func() {
		t.Helper()
		_ = s.Close()
		s = mustOpen(t, dir, opts)
	}
	wantLog(t, s, 0, 0, term1)
	if err := s.StoreLogs(entries(5, 6, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(entries(6, 7, 1)); err == nil {
		t.Fatal("an append overlapping the log was accepted")
	}
	if err := s.StoreLogs([]*raft.Log{entry(7, 1), entry(9, 1)}); err == nil {
		t.Fatal("a batch that is not contiguous was accepted")
	}
	mustStore(t, s, []*raft.Log{entry(7, 1)})
	for i := uint64(8); i <= 200; i += 16 {
		mustStore(t, s, entries(i, i+15, 1))
	}
	wantLog(t, s, 5, 215, term1)
	if n := len(segmentFiles(t, dir)); n < 5 {
		t.Fatalf("%d segments for 211 entries of 1 KiB segments: no rotation", n)
	}
	reopen()
	wantLog(t, s, 5, 215, term1)

	// Tail truncation in the middle of a batch and of a segment, then a
	// new term.
	if err := s.DeleteRange(100, 215); err != nil {
		t.Fatal(err)
	}
	wantLog(t, s, 5, 99, term1)
	reopen()
	wantLog(t, s, 5, 99, term1)
	mustStore(t, s, entries(100, 130, 2))
	term2 := func(i uint64) uint64 { return map[bool]uint64{true: 2, false: 1}[i >= 100] }
	wantLog(t, s, 5, 130, term2)
	reopen()
	wantLog(t, s, 5, 130, term2)

	// Head compaction: whole segments go; the rest is hidden until a
	// restart shows the older entries of the remaining segment again.
	files := len(segmentFiles(t, dir))
	if err := s.DeleteRange(5, 90); err != nil {
		t.Fatal(err)
	}
	wantLog(t, s, 91, 130, term2)
	if len(segmentFiles(t, dir)) >= files {
		t.Fatal("head compaction removed no segment")
	}
	reopen()
	first, _ := s.FirstIndex()
	if first > 91 || first < 6 {
		t.Fatalf("after reopening, first index %d", first)
	}
	wantLog(t, s, first, 130, term2)

	if err := s.DeleteRange(50, 40); err != nil {
		t.Fatal(err) // an empty range: nothing
	}
	if err := s.DeleteRange(first+1, 120); err == nil {
		t.Fatal("deleting from the middle was accepted")
	}

	// Everything, then an append far past the old log.
	if err := s.DeleteRange(first, 130); err != nil {
		t.Fatal(err)
	}
	wantLog(t, s, 0, 0, term1)
	if n := len(segmentFiles(t, dir)); n != 0 {
		t.Fatalf("%d segments left after deleting the whole log", n)
	}
	reopen()
	wantLog(t, s, 0, 0, term1)
	mustStore(t, s, entries(1000, 1010, 3))
	term3 := func(uint64) uint64 { return 3 }
	reopen()
	wantLog(t, s, 1000, 1010, term3)
	// Everything again, then an append below the old log.
	if err := s.DeleteRange(0, 2000); err != nil {
		t.Fatal(err)
	}
	mustStore(t, s, entries(3, 4, 3))
	reopen()
	wantLog(t, s, 3, 4, term3)
	if notes := s.Notes(); len(notes) != 0 {
		t.Fatalf("clean reopens made repairs: %q", notes)
	}
}

// TestStableStore: keys survive a reopen, a key never set is "not found"
// as hashicorp/raft expects, a torn write of one slot falls back to the
// state before it, and a stable file with both slots damaged is refused.
func TestStableStore(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	if _, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64 of a missing key: %v, want \"not found\"", err)
	}
	if _, err := s.Get([]byte("LastVoteCand")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get of a missing key: %v, want \"not found\"", err)
	}
	has, err := raft.HasExistingState(s, s, raft.NewInmemSnapshotStore())
	if err != nil || has {
		t.Fatalf("a new store: HasExistingState = %v, %v", has, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 8); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = mustOpen(t, dir, Options{})
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 8 || err != nil {
		t.Fatalf("CurrentTerm after reopening: %d, %v", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); string(v) != "n2" || err != nil {
		t.Fatalf("LastVoteCand after reopening: %q, %v", v, err)
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); err == nil {
		t.Fatal("GetUint64 of a 2-byte value succeeded")
	}
	_ = s.Close()

	// A write torn by a crash spoils one slot, the one being written: the
	// other holds the state before that Set.
	path := filepath.Join(dir, stableName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2*stableSlot {
		t.Fatalf("stable file of %d bytes", len(b))
	}
	seq0, _, _ := decodeSlot(b[:stableSlot])
	seq1, _, _ := decodeSlot(b[stableSlot:])
	newest := 0 // where the slot holding the newest state (CurrentTerm 8) starts
	if seq1 > seq0 {
		newest = stableSlot
	}
	torn := slices.Clone(b)
	copy(torn[newest:newest+stableSlot], make([]byte, 100))
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 7 || err != nil {
		t.Fatalf("CurrentTerm with its newest slot torn: %d, %v, want the state before (7)", v, err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 9); err != nil { // goes to the torn slot
		t.Fatal(err)
	}
	_ = s.Close()
	s = mustOpen(t, dir, Options{})
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 9 || err != nil {
		t.Fatalf("CurrentTerm after writing over the torn slot: %d, %v", v, err)
	}
	_ = s.Close()

	// Both slots bad: damage.
	b[20] ^= 1
	b[stableSlot+20] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var de *DamageError
	if _, err := Open(dir, Options{}); !errors.As(err, &de) || de.Path != path {
		t.Fatalf("open with a damaged stable file: %v, want a DamageError naming %s", err, path)
	}
	if _, err := Check(dir); !errors.As(err, &de) || de.Path != path {
		t.Fatalf("check of a damaged stable file: %v, want a DamageError naming %s", err, path)
	}
}

// TestStableStoreGrows: a value too large for the slots moves the state
// to a new file with larger slots.
func TestStableStoreGrows(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	big := bytes.Repeat([]byte("c"), 3*stableSlot)
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), big); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = mustOpen(t, dir, Options{})
	if v, err := s.Get([]byte("LastVoteCand")); !bytes.Equal(v, big) || err != nil {
		t.Fatalf("LastVoteCand: %d bytes, %v", len(v), err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 3 || err != nil {
		t.Fatalf("CurrentTerm: %d, %v", v, err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, l := range []*raft.Log{
		{Index: 1, Term: 1},
		{Index: 1 << 60, Term: 1<<64 - 1, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte{0}, 70000), Extensions: []byte{1}},
		{Index: 2, Term: 3, AppendedAt: time.Unix(-5, 7)},
	} {
		b := appendRecord(nil, l, l.Index, true)
		var got raft.Log
		h, err := decodeRecord(b, &got)
		if err != nil || h.tag != l.Index || h.flags != flagBatchEnd {
			t.Fatalf("decode: %v %+v", err, h)
		}
		if got.Index != l.Index || got.Term != l.Term || got.Type != l.Type || !bytes.Equal(got.Data, l.Data) ||
			!bytes.Equal(got.Extensions, l.Extensions) || !got.AppendedAt.Equal(l.AppendedAt) {
			t.Fatalf("round trip: got %+v, want %+v", got, l)
		}
	}
}

// TestConcurrentReads reads while appends, compactions and tail
// truncations run, as Raft's replication goroutines do alongside its main
// loop: a read returns the entry stored at that index or
// raft.ErrLogNotFound, never anything else (run with -race in CI).
func TestConcurrentReads(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{SegmentSize: 4096, NoSync: true})
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 3 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				first, _ := s.FirstIndex()
				last, _ := s.LastIndex()
				if last == 0 {
					continue
				}
				for i := first; i <= last; i += 7 {
					var l raft.Log
					err := s.GetLog(i, &l)
					if errors.Is(err, raft.ErrLogNotFound) {
						continue
					}
					if err != nil || l.Index != i || !bytes.Equal(l.Data, entry(i, l.Term).Data) {
						errs <- fmt.Errorf("GetLog(%d): %+v %v", i, l, err)
						return
					}
				}
			}
		}()
	}
	next := uint64(1)
	for round := range 1000 {
		mustStore(t, s, entries(next, next+9, 1))
		next += 10
		switch {
		case round%50 == 49:
			if err := s.DeleteRange(next-25, next-1); err != nil { // a conflicting tail
				t.Fatal(err)
			}
			next -= 25
		case round%20 == 19:
			first, _ := s.FirstIndex()
			if err := s.DeleteRange(first, next-40); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestAppendAfterGapRestartsLog: a node that crashed after installing a
// snapshot but before Raft deleted its old log restarts with that old log
// and a snapshot past its end; its leader then sends the entries after
// the snapshot. The log must take them, starting again there (the old
// entries are covered by the snapshot), durably, instead of refusing every
// append for good. A gap that no snapshot covers is refused and changes
// nothing: Raft's memory of its log has gone wrong, and deleting the log
// would lose entries no snapshot holds.
func TestAppendAfterGapRestartsLog(t *testing.T) {
	dir := t.TempDir()
	var snapshot uint64
	opts := Options{SegmentSize: 1024, SnapshotIndex: func() (uint64, error) { return snapshot, nil }}
	s := mustOpen(t, dir, opts)
	for i := uint64(1); i <= 60; i += 20 {
		mustStore(t, s, entries(i, i+19, 1))
	}
	wantLog(t, s, 1, 60, term1)
	term2 := func(uint64) uint64 { return 2 }
	for _, snapshot = range []uint64{0, 60, 498} {
		if err := s.StoreLogs(entries(500, 510, 2)); err == nil || !strings.Contains(err.Error(), "no snapshot covers") {
			t.Fatalf("an append at 500 after 60, the newest snapshot at %d: %v, want refused", snapshot, err)
		}
		wantLog(t, s, 1, 60, term1)
	}
	snapshot = 499
	mustStore(t, s, entries(500, 510, 2))
	wantLog(t, s, 500, 510, term2)
	var l raft.Log
	if err := s.GetLog(60, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(60) after the log started again at 500: %v, want ErrLogNotFound", err)
	}
	_ = s.Close()
	s = mustOpen(t, dir, opts)
	defer s.Close()
	wantLog(t, s, 500, 510, term2)
	mustStore(t, s, entries(511, 512, 2))
	wantLog(t, s, 500, 512, term2)
}
