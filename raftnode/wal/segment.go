package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cairndb/cairn/internal/fsync"

	"github.com/hashicorp/raft"
)

// segment is one file of the log: records of contiguous indexes from
// first on.
type segment struct {
	path string
	f    *os.File // open for the store's life: GetLog is one pread
	segmentHeader
	offs []int64 // offs[i]: offset of the record of index first+i
	size int64   // end of the last record: where the next one goes
	// synced is how much of the file is known durable: size, but in the
	// newest segment between an append and the syncer's next sync.
	synced int64
	// alloc is the file's size: past size it holds preallocated zeros
	// (preallocate), which mark the end of the records as well as the
	// file's end does.
	alloc int64
}

// last is the index of the segment's last record (first-1 when it holds
// none).
func (g *segment) last() uint64 { return g.first + uint64(len(g.offs)) - 1 }

// span returns the offset and length of the record of index i, which the
// segment must hold.
func (g *segment) span(i uint64) (int64, int64) {
	k := i - g.first
	end := g.size
	if k+1 < uint64(len(g.offs)) {
		end = g.offs[k+1]
	}
	return g.offs[k], end - g.offs[k]
}

// segmentName is the file name of the segment whose first index is first:
// zero-padded, so names sort as their indexes.
func segmentName(first uint64) string { return fmt.Sprintf("%020d.wal", first) }

// parseSegmentName returns the first index a segment file name holds.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ".wal")
	if !ok || len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// DamageError says which file of the log is damaged, and where: a record
// or header whose checksum does not match, or a missing segment, anywhere
// but in the last write (which a crash may have torn, and which recovery
// removes). A log with damage must not be used: it would lose entries
// this node acknowledged.
type DamageError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("wal: damaged: %s: at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// scan is what reading a segment's records found.
type scan struct {
	offs []int64
	end  int64 // end of the last good record
	// bad is the offset of the first record that is not good (-1: none)
	// and why.
	bad int64
	why error
	// The tag of the last good record, and whether it ended its batch.
	lastTag uint64
	lastEnd bool
}

// scanSegment reads and checks, in order, the records of the segment g
// whose file has size bytes: each header, checksum, index (contiguous from
// g.first) and tag. It stops at the first record that is not good.
func scanSegment(g *segment, size int64) (scan, error) {
	sc := scan{end: segmentHeaderSize, bad: -1, lastEnd: true}
	r := bufio.NewReaderSize(io.NewSectionReader(g.f, segmentHeaderSize, size-segmentHeaderSize), 1<<20)
	var hb [recordHeaderSize]byte
	var payload []byte
	for sc.end < size {
		if n, err := io.ReadFull(r, hb[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				if allZero(hb[:n]) {
					return sc, nil // preallocated zeros to the end
				}
				sc.bad, sc.why = sc.end, errors.New("record header cut short")
				return sc, nil
			}
			return sc, fmt.Errorf("wal: read %s: %w", g.path, err)
		}
		h, err := decodeRecordHeader(hb[:])
		if err != nil && allZero(hb[:]) {
			zeros, zerr := zeroFrom(g.f, sc.end, size)
			if zerr != nil {
				return sc, fmt.Errorf("wal: read %s: %w", g.path, zerr)
			}
			if zeros {
				return sc, nil // the preallocated rest of the file
			}
		}
		if err == nil && int64(h.length) > size-sc.end-recordHeaderSize {
			err = fmt.Errorf("record of %d bytes runs past the end of the file", h.length)
		}
		if err != nil {
			sc.bad, sc.why = sc.end, err
			return sc, nil
		}
		payload = slices.Grow(payload[:0], int(h.length))[:h.length]
		if _, err := io.ReadFull(r, payload); err != nil {
			return sc, fmt.Errorf("wal: read %s: %w", g.path, err)
		}
		want := g.first + uint64(len(sc.offs))
		if err := checkRecord(g.version, h, payload, want, sc.lastTag, sc.lastEnd); err != nil {
			sc.bad, sc.why = sc.end, err
			return sc, nil
		}
		sc.offs = append(sc.offs, sc.end)
		sc.end += recordHeaderSize + int64(h.length)
		sc.lastTag, sc.lastEnd = h.tag, h.flags&flagBatchEnd != 0
	}
	return sc, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// zeroFrom reports whether f holds only zeros from off to size.
func zeroFrom(f *os.File, off, size int64) (bool, error) {
	buf := make([]byte, 64<<10)
	for off < size {
		n := min(int64(len(buf)), size-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return false, err
		}
		if !allZero(buf[:n]) {
			return false, nil
		}
		off += n
	}
	return true, nil
}

// checkRecord checks a record whose header h is good, in a segment of
// format version: its payload's checksum and encoding, that it holds index
// want, and its tag: at most its index; in version 1, where the tag is the
// first index of the record's write, its own index (it starts a write) or
// the previous record's tag (it continues an unfinished one).
func checkRecord(version uint32, h recordHeader, payload []byte, want, prevTag uint64, prevEnd bool) error {
	if checksum(payload) != h.crc {
		return errors.New("record checksum mismatch")
	}
	var l raft.Log
	if err := decodePayload(payload, &l); err != nil {
		return err
	}
	if l.Index != want {
		return fmt.Errorf("record holds index %d, want %d", l.Index, want)
	}
	if h.tag > l.Index || (version == 1 && h.tag != l.Index && (prevEnd || h.tag != prevTag)) {
		return fmt.Errorf("record of index %d tagged %d", l.Index, h.tag)
	}
	return nil
}

// tornTail decides whether the bad record at sc.bad of the newest segment
// g (file size bytes) is part of the unsynced tail a crash tore: then every
// good record after it was written while the bad record's index was not yet
// durable (its tag is at most that index), so none of them was ever
// acknowledged either. A good record written after that index was durable
// (tagged past it) means the bad record was synced before: damage. With
// version 1's tags (each write synced before the next) that is: only
// records of the same write follow. A torn tail returns nil; damage a
// *DamageError.
func tornTail(g *segment, size int64, sc scan) error {
	rest := make([]byte, size-sc.bad)
	if _, err := g.f.ReadAt(rest, sc.bad); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("wal: read %s: %w", g.path, err)
	}
	want := g.first + uint64(len(sc.offs))
	for i := 1; i+recordHeaderSize <= len(rest); i++ {
		h, err := decodeRecordHeader(rest[i:])
		if err != nil || int64(h.length) > int64(len(rest)-i-recordHeaderSize) {
			continue
		}
		payload := rest[i+recordHeaderSize : i+recordHeaderSize+int(h.length)]
		var l raft.Log
		if checksum(payload) != h.crc || decodePayload(payload, &l) != nil {
			continue
		}
		if unsynced := l.Index > want && h.tag <= want; !unsynced {
			return &DamageError{Path: g.path, Offset: sc.bad, Reason: fmt.Sprintf("%v, and a good record (index %d) follows at offset %d", sc.why, l.Index, sc.bad+int64(i))}
		}
	}
	return nil
}

// loaded is the log a directory holds, as recovery found it.
type loaded struct {
	segs  []*segment // oldest first, contiguous
	notes []string   // what recovery repaired (or, checking, would repair)
	// stale are older segments a fresh one supersedes, tmps unfinished
	// segment files; torn is the newest segment's torn tail (0: none).
	stale []*segment
	tmps  []string
	torn  int64
}

// load opens and checks every segment in dir (read-only unless write),
// and works out the repairs recovery makes, without making them:
//   - segment files a crash left unfinished (*.tmp) are removed;
//   - segments older than the newest fresh one are leftovers of a
//     deletion of the whole log that a crash interrupted: removed;
//   - a bad record in the newest segment that only records of the same
//     write follow is a torn write: the segment is cut before it.
//
// Anything else is damage (*DamageError): a bad header or record in any
// other place, or a gap between the remaining segments.
func load(dir string, write bool) (*loaded, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	ld := &loaded{}
	var all []*segment
	ok := false
	defer func() {
		if !ok {
			for _, g := range all {
				_ = g.f.Close()
			}
		}
	}()
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".wal.tmp") {
			ld.tmps = append(ld.tmps, filepath.Join(dir, name))
			ld.notes = append(ld.notes, fmt.Sprintf("%s: a segment whose creation a crash interrupted: removed", filepath.Join(dir, name)))
			continue
		}
		first, isSeg := parseSegmentName(name)
		if !isSeg {
			continue
		}
		g := &segment{path: filepath.Join(dir, name)}
		if g.f, err = os.OpenFile(g.path, flag, 0); err != nil {
			return nil, fmt.Errorf("wal: %w", err)
		}
		all = append(all, g)
		b := make([]byte, segmentHeaderSize)
		if _, err := io.ReadFull(g.f, b); err != nil {
			return nil, &DamageError{Path: g.path, Reason: fmt.Sprintf("segment header: %v", err)}
		}
		if g.segmentHeader, err = decodeSegmentHeader(b); err != nil {
			return nil, &DamageError{Path: g.path, Reason: err.Error()}
		}
		if g.first != first || g.first == 0 {
			return nil, &DamageError{Path: g.path, Reason: fmt.Sprintf("segment header: first index %d, the file name says %d", g.first, first)}
		}
	}
	slices.SortFunc(all, func(a, b *segment) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	for i, g := range all {
		if i > 0 && all[i-1].seq == g.seq {
			return nil, &DamageError{Path: g.path, Reason: fmt.Sprintf("segment sequence %d is also %s's", g.seq, all[i-1].path)}
		}
		st, err := g.f.Stat()
		if err != nil {
			return nil, fmt.Errorf("wal: %w", err)
		}
		sc, err := scanSegment(g, st.Size())
		if err != nil {
			return nil, err
		}
		if sc.bad >= 0 {
			if i < len(all)-1 {
				return nil, &DamageError{Path: g.path, Offset: sc.bad, Reason: fmt.Sprintf("%v (not the newest segment)", sc.why)}
			}
			if err := tornTail(g, st.Size(), sc); err != nil {
				return nil, err
			}
			ld.torn = sc.bad
			ld.notes = append(ld.notes, fmt.Sprintf("%s: a torn write at offset %d (%v) of %d bytes, from a crash before it was synced: cut off", g.path, sc.bad, sc.why, st.Size()-sc.bad))
		}
		g.offs, g.size, g.alloc = sc.offs, sc.end, st.Size()
	}
	// Everything older than the newest fresh segment was deleted.
	from := 0
	for i, g := range all {
		if g.fresh {
			from = i
		}
	}
	ld.stale, all = all[:from], all[from:]
	for _, g := range ld.stale {
		ld.notes = append(ld.notes, fmt.Sprintf("%s: left over from a deletion of the whole log that a crash interrupted (entries %d..%d): removed", g.path, g.first, g.last()))
	}
	for i := 1; i < len(all); i++ {
		if prev := all[i-1]; prev.last()+1 != all[i].first {
			return nil, &DamageError{Path: all[i].path, Reason: fmt.Sprintf("starts at index %d, but the segment before it (%s) ends at %d: a segment is missing", all[i].first, prev.path, prev.last())}
		}
	}
	ld.segs = all
	ok = true
	return ld, nil
}

// repair makes the repairs load worked out, durably.
func (ld *loaded) repair(dir string, noSync bool) error {
	changed := len(ld.tmps) > 0 || len(ld.stale) > 0
	for _, p := range ld.tmps {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
	}
	for _, g := range ld.stale {
		_ = g.f.Close()
		if err := os.Remove(g.path); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
	}
	ld.stale = nil
	if changed && !noSync {
		if err := fsync.Dir(dir); err != nil {
			return fmt.Errorf("wal: sync %s: %w", dir, err)
		}
	}
	if ld.torn > 0 {
		g := ld.segs[len(ld.segs)-1]
		if err := g.f.Truncate(g.size); err != nil {
			return fmt.Errorf("wal: cut the torn tail of %s: %w", g.path, err)
		}
		g.alloc = g.size
		if !noSync {
			if err := syncData(g.f); err != nil {
				return fmt.Errorf("wal: sync %s: %w", g.path, err)
			}
		}
	}
	return nil
}
