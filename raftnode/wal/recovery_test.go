package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// copyDir copies the files of dir into a new temporary directory.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func patchFile(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b := make([]byte, 1)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(b, off)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	patchFile(t, path, off, []byte{b[0] ^ 0x40})
}

// TestTornTailEveryOffset cuts the file at every byte of the last write,
// or zeroes it from there on (what a crash before its fdatasync may leave,
// in a file that grows or a preallocated one), and also leaves garbage
// past the cut (a file whose size grew before its data): every
// reopen cuts the torn record off, says so, and keeps every earlier entry
// intact (whole records of the torn write included: never acknowledged,
// but entries Raft may keep or overwrite); the log then takes the rest of
// that write again.
func TestTornTailEveryOffset(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	mustStore(t, s, entries(1, 10, 1))
	seg := segmentFiles(t, dir)[0]
	before := s.segs[0].size
	mustStore(t, s, entries(11, 13, 1)) // the last write: three records
	after := s.segs[0].size
	bounds := []int64{before, s.segs[0].offs[11], s.segs[0].offs[12], after} // its records' starts and end
	if alloc := fileSize(t, seg); alloc <= after && runtime.GOOS == "linux" {
		t.Fatalf("the segment holds %d bytes of records in a file of %d: not preallocated", after, alloc)
	}
	_ = s.Close()
	// Keep 64 bytes of the preallocated zeros: the copies below stay small.
	if err := os.Truncate(seg, after+64); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}

	for cut := before; cut < after; cut++ {
		for _, tail := range [][]byte{nil, bytes.Repeat([]byte{0xee}, 300), []byte(strings.Repeat("garbage!", 40))} {
			// The records of the last write that the cut left whole stay
			// (zeroing the zeros a record ends with leaves it whole).
			end := cut
			if cut%2 == 0 && tail == nil {
				for _, b := range bounds[1:] {
					if b > cut {
						if bytes.Count(orig[cut:b], []byte{0}) == int(b-cut) {
							end = b
						}
						break
					}
				}
			}
			kept, boundary := 0, false
			for i, b := range bounds {
				if b <= end {
					kept = i
				}
				boundary = boundary || b == end
			}
			last := 10 + uint64(kept)
			d := copyDir(t, dir)
			p := filepath.Join(d, filepath.Base(seg))
			// Zeros from the cut on (what preallocation leaves), or the
			// file ends there, and maybe garbage after the cut.
			if cut%2 == 0 {
				patchFile(t, p, cut, make([]byte, after-cut))
			} else if err := os.Truncate(p, cut); err != nil {
				t.Fatal(err)
			}
			if tail != nil {
				patchFile(t, p, cut, tail)
			}
			s, err := Open(d, Options{NoSync: true})
			if err != nil {
				t.Fatalf("cut at %d (of %d..%d), %d bytes of tail: %v", cut, before, after, len(tail), err)
			}
			wantLog(t, s, 1, last, term1)
			torn := !boundary || tail != nil
			if torn && (len(s.Notes()) != 1 || !strings.Contains(s.Notes()[0], "torn write at offset")) {
				t.Fatalf("cut at %d: notes %q", cut, s.Notes())
			}
			if !torn && len(s.Notes()) != 0 {
				t.Fatalf("cut at %d to zeros: notes %q", cut, s.Notes())
			}
			if got := s.segs[0].size; got != bounds[kept] {
				t.Fatalf("cut at %d: the records end at %d after recovery, want %d", cut, got, bounds[kept])
			}
			if got := fileSize(t, p); torn && got != bounds[kept] {
				t.Fatalf("cut at %d: the file has %d bytes after recovery, want %d", cut, got, bounds[kept])
			}
			mustStore(t, s, entries(last+1, 13, 2))
			_ = s.Close()
			s = mustOpen(t, d, Options{NoSync: true})
			wantLog(t, s, 1, 13, func(i uint64) uint64 { return map[bool]uint64{true: 2, false: 1}[i > last] })
			_ = s.Close()
		}
	}
}

// TestTornWriteWithLaterPages: a crash may persist a later page of the
// last write but not an earlier one; the records of that same write past
// the hole are no reason to refuse the log.
func TestTornWriteWithLaterPages(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	mustStore(t, s, entries(1, 10, 1))
	seg := segmentFiles(t, dir)[0]
	before := s.segs[0].size
	mustStore(t, s, entries(11, 14, 1))
	_ = s.Close()
	patchFile(t, seg, before, make([]byte, 30)) // the first record of the last write is lost
	s = mustOpen(t, dir, Options{})
	wantLog(t, s, 1, 10, term1)
	if len(s.Notes()) != 1 {
		t.Fatalf("notes: %q", s.Notes())
	}
}

// TestDamageRefused: a bad record that a later write follows, a bad
// record in a segment other than the newest, a bad segment header and a
// missing segment are damage: Open and Check refuse the log with the file
// and the offset named, and change nothing.
func TestDamageRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{SegmentSize: 2048})
	for i := uint64(1); i <= 120; i += 10 {
		mustStore(t, s, entries(i, i+9, 1))
	}
	_ = s.Close()
	segs := segmentFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	last := segs[len(segs)-1]
	cases := []struct {
		name   string
		file   string
		damage func(t *testing.T, p string)
		offset int64
	}{
		{"earlier segment, last record", segs[0], func(t *testing.T, p string) { flip(t, p, fileSize(t, p)-3) }, -1},
		{"earlier segment, first record", segs[1], func(t *testing.T, p string) { flip(t, p, segmentHeaderSize+recordHeaderSize+2) }, segmentHeaderSize},
		{"earlier segment cut short", segs[0], func(t *testing.T, p string) {
			if err := os.Truncate(p, fileSize(t, p)-5); err != nil {
				t.Fatal(err)
			}
		}, -1},
		{"newest segment, a record later writes follow", last, func(t *testing.T, p string) { flip(t, p, segmentHeaderSize+recordHeaderSize+2) }, segmentHeaderSize},
		{"newest segment, a record header", last, func(t *testing.T, p string) { flip(t, p, segmentHeaderSize+1) }, segmentHeaderSize},
		{"segment header", segs[1], func(t *testing.T, p string) { flip(t, p, 20) }, 0},
		{"missing segment", segs[1], func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, 0},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			d := copyDir(t, dir)
			p := filepath.Join(d, filepath.Base(c.file))
			c.damage(t, p)
			sizes := map[string]int64{}
			for _, f := range segmentFiles(t, d) {
				sizes[f] = fileSize(t, f)
			}
			var de *DamageError
			_, cerr := Check(d)
			_, err := Open(d, Options{})
			for _, e := range []error{cerr, err} {
				if !errors.As(e, &de) {
					t.Fatalf("%v, want a DamageError", e)
				}
				if c.name != "missing segment" && de.Path != p {
					t.Fatalf("%v names %s, want %s", e, de.Path, p)
				}
				if c.offset >= 0 && de.Offset != c.offset {
					t.Fatalf("%v: offset %d, want %d", e, de.Offset, c.offset)
				}
			}
			for f, n := range sizes {
				if fileSize(t, f) != n {
					t.Fatalf("refusing the log changed %s", f)
				}
			}
		})
	}
}

// TestDeleteAllInterrupted: deleting the whole log removes every segment
// durably before the next append, but should segments of the old log
// survive anyway (the removals lost by a crash on a file system that
// reorders them, or a removal that failed), the fresh segment the next
// append starts supersedes them: recovery removes them, says so, and the
// log is the new one, whether the old entries lie below or above it.
func TestDeleteAllInterrupted(t *testing.T) {
	for _, next := range []uint64{500, 3, 61} {
		dir := t.TempDir()
		s := mustOpen(t, dir, Options{SegmentSize: 1024})
		for i := uint64(1); i <= 60; i += 10 {
			mustStore(t, s, entries(i, i+9, 1))
		}
		saved := copyDir(t, dir)
		if err := s.DeleteRange(1, 60); err != nil {
			t.Fatal(err)
		}
		mustStore(t, s, entries(next, next+20, 2))
		_ = s.Close()
		// Put the old segments back, as if their removal never happened.
		for _, p := range segmentFiles(t, saved) {
			dst := filepath.Join(dir, filepath.Base(p))
			if _, err := os.Stat(dst); err == nil {
				continue // the new log reused the name
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if r, err := Check(dir); err != nil || r.First != next || len(r.Notes) == 0 {
			t.Fatalf("check: %+v %v", r, err)
		}
		s = mustOpen(t, dir, Options{SegmentSize: 1024})
		wantLog(t, s, next, next+20, func(uint64) uint64 { return 2 })
		if len(s.Notes()) == 0 || !strings.Contains(s.Notes()[0], "left over from a deletion of the whole log") {
			t.Fatalf("notes: %q", s.Notes())
		}
		_ = s.Close()
		s = mustOpen(t, dir, Options{SegmentSize: 1024})
		if len(s.Notes()) != 0 {
			t.Fatalf("leftovers not removed: %q", s.Notes())
		}
		_ = s.Close()
	}
}

// TestFailedHeadRemovalRetried: a compaction whose removal of a segment
// fails (here the path is taken by a directory for a while; on Windows a
// file another process holds open) leaves that segment on disk, and the
// next compaction must remove it too: a segment left behind below the
// ones the next compactions remove is a gap, which recovery refuses as
// damage.
func TestFailedHeadRemovalRetried(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1024}
	s := mustOpen(t, dir, opts)
	for i := uint64(1); i <= 100; i += 10 {
		mustStore(t, s, entries(i, i+9, 1))
	}
	segs := segmentFiles(t, dir)
	if len(segs) < 4 {
		t.Fatalf("%d segments, want at least 4", len(segs))
	}
	// The second segment's path is a non-empty directory while the first
	// compaction runs: its removal fails.
	stuck := segs[1]
	aside := filepath.Join(t.TempDir(), "aside")
	if err := os.Rename(stuck, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(stuck, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	second, fourth := s.segs[1].last(), s.segs[3].last()
	if err := s.DeleteRange(1, second); err == nil {
		t.Fatal("a compaction whose removal failed reported success")
	}
	if err := os.RemoveAll(stuck); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, stuck); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(second+1, fourth); err != nil {
		t.Fatal(err)
	}
	wantLog(t, s, fourth+1, 100, term1)
	_ = s.Close()
	s = mustOpen(t, dir, opts)
	first, _ := s.FirstIndex()
	if first > fourth+1 {
		t.Fatalf("first index %d after reopening, want at most %d", first, fourth+1)
	}
	wantLog(t, s, first, 100, term1)
	for _, p := range segmentFiles(t, dir) {
		if p == stuck {
			t.Fatalf("%s, whose removal failed, is still there after the next compaction", p)
		}
	}
}

// TestUnfinishedSegmentRemoved: a segment whose creation a crash
// interrupted (still under its temporary name) is removed.
func TestUnfinishedSegmentRemoved(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	mustStore(t, s, entries(1, 3, 1))
	_ = s.Close()
	tmp := filepath.Join(dir, segmentName(4)+".tmp")
	if err := os.WriteFile(tmp, []byte("CAIRN"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	wantLog(t, s, 1, 3, term1)
	if len(s.Notes()) != 1 || !strings.Contains(s.Notes()[0], "creation a crash interrupted") {
		t.Fatalf("notes: %q", s.Notes())
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the unfinished segment is still there: %v", err)
	}
}

// TestFailedWriteStopsStore: a write that fails in a way the store cannot
// undo (here its file is gone from under it) is reported, and every later
// write is refused, rather than appending after a file end it does not
// know; a restart recovers what was synced.
func TestFailedWriteStopsStore(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	mustStore(t, s, entries(1, 5, 1))
	_ = s.segs[0].f.Close()
	if err := s.StoreLogs(entries(6, 6, 1)); err == nil {
		t.Fatal("a failed write was reported as stored")
	}
	for _, op := range []func() error{
		func() error { return s.StoreLogs(entries(6, 6, 1)) },
		func() error { return s.DeleteRange(1, 2) },
	} {
		if err := op(); err == nil || !strings.Contains(err.Error(), "restart") {
			t.Fatalf("a write after a failure: %v, want the failure", err)
		}
	}
	if l, _ := s.LastIndex(); l != 5 {
		t.Fatalf("last index %d after a failed append", l)
	}
	s = mustOpen(t, dir, Options{})
	wantLog(t, s, 1, 5, term1)
}

func TestCheckReports(t *testing.T) {
	dir := t.TempDir()
	if r, err := Check(filepath.Join(dir, "none")); err != nil || r.Segments != 0 {
		t.Fatalf("check of a missing directory: %+v %v", r, err)
	}
	s := mustOpen(t, dir, Options{SegmentSize: 1024})
	mustStore(t, s, entries(1, 40, 1))
	mustStore(t, s, entries(41, 80, 1))
	_ = s.Close()
	r, err := Check(dir)
	if err != nil || r.First != 1 || r.Last != 80 || r.Segments != 2 || len(r.Notes) != 0 {
		t.Fatalf("check: %+v %v", r, err)
	}
	seg := segmentFiles(t, dir)[1]
	size := fileSize(t, seg)
	flip(t, seg, size-1)
	r, err = Check(dir)
	if err != nil || r.Last != 79 || len(r.Notes) != 1 {
		t.Fatalf("check of a torn tail: %+v %v", r, err)
	}
	if fileSize(t, seg) != size {
		t.Fatal("check changed the file")
	}
}

// TestPreallocatedSegment: the zeros preallocated past the last record
// end the log as cleanly as the file's end: a reopen repairs nothing and
// appends after the last record; the segment rotates with its zeros left
// in place.
func TestPreallocatedSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4 << 20}
	s := mustOpen(t, dir, opts)
	mustStore(t, s, entries(1, 100, 1))
	data := s.segs[0].size
	_ = s.Close()
	seg := segmentFiles(t, dir)[0]
	if alloc := fileSize(t, seg); alloc <= data && runtime.GOOS == "linux" {
		t.Fatalf("%d bytes of records in a file of %d: not preallocated", data, alloc)
	}
	s = mustOpen(t, dir, opts)
	if len(s.Notes()) != 0 || s.segs[0].size != data {
		t.Fatalf("reopening a preallocated segment: notes %q, records end at %d, want %d", s.Notes(), s.segs[0].size, data)
	}
	mustStore(t, s, entries(101, 200, 1))
	big := &raft.Log{Index: 201, Term: 1, Data: bytes.Repeat([]byte{7}, 5<<20)} // past the segment size
	mustStore(t, s, []*raft.Log{big})
	mustStore(t, s, entries(202, 210, 1)) // into a new segment
	_ = s.Close()
	s = mustOpen(t, dir, opts)
	if len(s.Notes()) != 0 || len(segmentFiles(t, dir)) != 2 {
		t.Fatalf("notes %q, %d segments", s.Notes(), len(segmentFiles(t, dir)))
	}
	var got raft.Log
	if err := s.GetLog(201, &got); err != nil || !bytes.Equal(got.Data, big.Data) {
		t.Fatalf("GetLog(201): %v", err)
	}
	for _, i := range []uint64{1, 200, 202, 210} {
		if err := s.GetLog(i, &got); err != nil || got.Index != i {
			t.Fatalf("GetLog(%d): %v", i, err)
		}
	}
}
