// Package wal is Raft's log and stable store: a write-ahead log of
// segment files that appends each StoreLogs batch with one write, synced
// in the background with one fdatasync for however many appends came
// meanwhile (durable.go; raft-boltdb's bbolt commit took two per append,
// plus its B+tree), and a small stable file overwritten in place. It implements hashicorp/raft's
// LogStore and StableStore (MonotonicLogStore too, answering no:
// IsMonotonic). The formats are in record.go, recovery in segment.go;
// DESIGN.md in raftnode says what the node relies on.
package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/cairndb/cairn/internal/fsync"

	"github.com/hashicorp/raft"
)

// DefaultSegmentSize is the size past which the log starts a new segment
// file. Compaction removes whole segments only, so it is also about how
// much log beyond what Raft keeps stays on disk.
const DefaultSegmentSize = 64 << 20

// Options configure Open. The zero value is ready to use.
type Options struct {
	// NoSync skips every fsync: for tests only, a crash may lose or tear
	// anything.
	NoSync bool
	// SegmentSize is the size past which a new segment starts; 0 means
	// DefaultSegmentSize.
	SegmentSize int64
	// SnapshotIndex returns the index of the node's newest snapshot (0:
	// none). An append past a gap starts the log again only if that
	// snapshot covers every index before it; nil refuses every gap.
	SnapshotIndex func() (uint64, error)
	// SyncInline, when set and true, has StoreLogs sync an append itself
	// before it returns rather than leave it to the syncer: where nothing
	// would run meanwhile that a background sync could overlap (a Raft
	// follower answers an append only once it is durable), it spares two
	// goroutine hand-offs.
	SyncInline func() bool
	// BeforeSync, for tests, is called by the background syncer before
	// each fdatasync (outside the writers' lock: appends go on).
	BeforeSync func()
}

// Store is the log and stable store of one node, in one directory. Its
// methods are safe for concurrent use: writes are serialized, and reads
// run alongside them (a read sees an entry once it is written; it is
// durable once WaitDurable says so).
type Store struct {
	dir  string
	opts Options

	wmu     sync.Mutex // serializes writers: appends, deletions
	buf     []byte     // the encoded batch, reused (under wmu)
	nextSeq uint64     // sequence number of the next segment (under wmu)
	// failed is why the store refuses writes: a write or sync failed and
	// the file's state is unknown. Only a restart (recovery) clears it.
	failed error
	// epoch counts the changes to the newest segment other than appends
	// (cuts, removals), so that the syncer can tell that what it synced
	// may be gone (under wmu).
	epoch uint64

	dur                    durability
	kick                   chan struct{} // wakes the syncer
	stopSyncer, syncerDone chan struct{}
	closeOnce              sync.Once
	// noPrealloc: the file system cannot preallocate; appends grow files.
	noPrealloc bool

	mu          sync.RWMutex // guards what readers see
	segs        []*segment   // oldest first; appends go to the last
	first, last uint64       // the log's entries; 0, 0 when empty

	stable stableFile
	notes  []string
}

// Open opens, or creates, the log in dir: it checks every record, makes
// the repairs a crash calls for (a torn last write is cut off, leftovers
// of an interrupted deletion removed; Notes says what it did), and refuses
// a damaged log with a *DamageError.
func Open(dir string, opts Options) (*Store, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	ld, err := load(dir, true)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, opts: opts, segs: ld.segs, notes: ld.notes}
	if err := ld.repair(dir, opts.NoSync); err != nil {
		s.closeFiles()
		return nil, err
	}
	if err := s.stable.open(dir, opts.NoSync); err != nil {
		s.closeFiles()
		return nil, err
	}
	for _, g := range s.segs {
		s.nextSeq = max(s.nextSeq, g.seq)
		if len(g.offs) > 0 && s.first == 0 {
			s.first = g.first
		}
	}
	s.nextSeq++
	if s.first != 0 {
		s.last = s.segs[len(s.segs)-1].last()
	}
	// What the log holds may be only in the page cache (the node was
	// killed before its last sync): sync it before counting it durable.
	if len(s.segs) > 0 && !opts.NoSync {
		if err := syncData(s.segs[len(s.segs)-1].f); err != nil {
			s.closeFiles()
			return nil, fmt.Errorf("wal: sync %s: %w", s.segs[len(s.segs)-1].path, err)
		}
	}
	for _, g := range s.segs {
		g.synced = g.size
	}
	s.dur.init(s.last)
	s.kick = make(chan struct{}, 1)
	s.stopSyncer, s.syncerDone = make(chan struct{}), make(chan struct{})
	if opts.NoSync {
		close(s.syncerDone)
	} else {
		go s.syncLoop()
	}
	return s, nil
}

// SyncDir makes the creations, renames and removals of entries of the
// directory dir durable (nothing on Windows, which cannot).
func SyncDir(dir string) error { return fsync.Dir(dir) }

// Notes returns what Open repaired, one line each, for the node's log.
func (s *Store) Notes() []string { return s.notes }

// Close stops the syncer, syncs what was written, and closes the store's
// files.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { close(s.stopSyncer) })
	<-s.syncerDone
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var err error
	if s.failed == nil {
		err = s.syncTail()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeFiles()
	s.segs, s.first, s.last = nil, 0, 0
	s.stable.mu.Lock()
	s.stable.close()
	s.stable.mu.Unlock()
	if s.failed == nil {
		s.fail(errors.New("wal: closed"))
	}
	return err
}

func (s *Store) closeFiles() {
	for _, g := range s.segs {
		_ = g.f.Close()
	}
}

// IsMonotonic is false although the log takes no gaps (an append past a
// gap starts it again, StoreLogs). Told it is monotonic, hashicorp/raft
// v1.7.3 deletes the whole log after installing a snapshot, yet keeps
// believing it holds the entries it had past the snapshot's index
// (hashicorp/raft#697): it then accepts entries after them and panics
// applying the ones it deleted, on every start. Not monotonic, it compacts
// the log up to the snapshot instead, as it did over raft-boltdb
// (TestInstallSnapshotBelowLogEnd).
func (s *Store) IsMonotonic() bool { return false }

// FirstIndex returns the index of the first entry, 0 when there is none.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.first, nil
}

// LastIndex returns the index of the last entry, 0 when there is none.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.last, nil
}

// GetLog reads the entry at index into l with one pread, checking its
// checksum; raft.ErrLogNotFound when the log does not hold it.
func (s *Store) GetLog(index uint64, l *raft.Log) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.first == 0 || index < s.first || index > s.last {
		return raft.ErrLogNotFound
	}
	k := sort.Search(len(s.segs), func(i int) bool { return s.segs[i].first > index }) - 1
	g := s.segs[k]
	off, n := g.span(index)
	b := make([]byte, n)
	if _, err := g.f.ReadAt(b, off); err != nil {
		return fmt.Errorf("wal: read %s: %w", g.path, err)
	}
	if _, err := decodeRecord(b, l); err != nil {
		return &DamageError{Path: g.path, Offset: off, Reason: err.Error()}
	}
	if l.Index != index {
		return &DamageError{Path: g.path, Offset: off, Reason: fmt.Sprintf("record holds index %d, want %d", l.Index, index)}
	}
	return nil
}

// StoreLog appends one entry.
func (s *Store) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs appends entries, which must be contiguous and come after the
// last entry, with one write. It returns once they are written, or with an
// error and nothing appended; the syncer makes them durable (WaitDurable),
// except configuration entries, which are durable when it returns. Entries
// that leave a gap after the last one start the log again when a snapshot
// covers the gap (Options.SnapshotIndex): the older entries are deleted
// first, durably. A failed sync leaves the file in an unknown state: the
// store then refuses every write until the node restarts.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	first := logs[0].Index
	for i, l := range logs {
		if l.Index != first+uint64(i) {
			return fmt.Errorf("wal: entries not contiguous: index %d after %d", l.Index, logs[i-1].Index)
		}
		if len(l.Data)+len(l.Extensions) > maxEntry {
			return fmt.Errorf("wal: entry %d holds %d bytes, the limit is %d", l.Index, len(l.Data)+len(l.Extensions), maxEntry)
		}
	}
	if first == 0 {
		return errors.New("wal: entry with index 0")
	}
	if s.last != 0 && first <= s.last {
		return fmt.Errorf("wal: entries %d..%d overlap the log, whose last entry is %d", first, logs[len(logs)-1].Index, s.last)
	}
	if s.last != 0 && first > s.last+1 {
		// Raft skips indexes only past a snapshot that covers them: the
		// log starts again at first, and what it holds is obsolete. Raft
		// leaves such a gap after installing a snapshot past the log's
		// end or restoring one (IsMonotonic); refusing would leave the
		// node unable to take any entry from its leader. A gap no snapshot
		// covers is Raft's memory gone wrong (a follower whose append
		// failed after deleting a conflicting tail still counts that tail,
		// and may be elected): deleting would lose committed entries.
		if err := s.gapCovered(first); err != nil {
			return err
		}
		if err := s.deleteAll(); err != nil {
			return err
		}
	}
	g, err := s.tailFor(first)
	if err != nil {
		return err
	}
	buf := s.buf[:0]
	offs := make([]int64, len(logs))
	tag := min(first, s.dur.nextTag())
	configuration := false
	for i, l := range logs {
		offs[i] = g.size + int64(len(buf))
		buf = appendRecord(buf, l, tag, i == len(logs)-1)
		configuration = configuration || l.Type == raft.LogConfiguration
	}
	s.buf = buf
	if cap(buf) > maxKeptBuffer {
		s.buf = nil // a batch of large entries: do not keep its buffer, even if the append fails
	}
	s.preallocate(g, g.size+int64(len(buf)))
	if _, err := g.f.WriteAt(buf, g.size); err != nil {
		// Cut what may have been written; if even that fails, the file's
		// end is unknown.
		if terr := g.f.Truncate(g.size); terr != nil {
			return s.fail(fmt.Errorf("wal: append to %s failed (%w) and cutting it back failed too (%v): restart the node", g.path, err, terr))
		}
		// The cut must be durable before the caller hears that nothing was
		// appended: pages of the failed write that reached the disk would
		// otherwise come back as whole records after a power loss, and
		// Raft could commit an entry whose writer was told it failed.
		if !s.opts.NoSync {
			if serr := syncData(g.f); serr != nil {
				return s.fail(fmt.Errorf("wal: append to %s failed (%w) and syncing its cut failed too (%v): restart the node", g.path, err, serr))
			}
		}
		g.alloc = g.size
		return fmt.Errorf("wal: append to %s: %w", g.path, err)
	}
	s.mu.Lock()
	g.offs = append(g.offs, offs...)
	g.size += int64(len(buf))
	if s.first == 0 {
		s.first = first
	}
	s.last = logs[len(logs)-1].Index
	s.mu.Unlock()
	s.dur.wrote(s.last)
	if configuration || s.opts.NoSync || (s.opts.SyncInline != nil && s.opts.SyncInline()) {
		return s.syncTail()
	}
	s.kickSync()
	return nil
}

// gapCovered returns nil when the newest snapshot covers every index
// before first, where an append leaving a gap starts.
func (s *Store) gapCovered(first uint64) error {
	var snap uint64
	if s.opts.SnapshotIndex != nil {
		var err error
		if snap, err = s.opts.SnapshotIndex(); err != nil {
			return fmt.Errorf("wal: entries from %d leave a gap after the last entry %d: %w", first, s.last, err)
		}
	}
	if snap < first-1 {
		return fmt.Errorf("wal: entries from %d leave a gap after the last entry %d that no snapshot covers (the newest is at %d)", first, s.last, snap)
	}
	return nil
}

// maxKeptBuffer bounds the batch buffer kept between appends.
const maxKeptBuffer = 4 << 20

// maxEntry bounds an entry's data and extensions: a record's length is a
// u32 (cairn's own entries stay far below: values are limited to MiBs).
const maxEntry = 1 << 30

// preallocChunk is how far past an append's end a segment is
// preallocated: small steps, so that a nearly full disk is not taken in
// one go (the free-space reserve measures it).
const preallocChunk = 1 << 20

// preallocate makes sure g's file holds allocated room up to end,
// extending it by preallocChunk steps (not past the segment size, unless
// end is). Best effort: where it fails or is not supported, the append
// grows the file itself, and fails itself if there is no room.
func (s *Store) preallocate(g *segment, end int64) {
	if end <= g.alloc || s.opts.NoSync || s.noPrealloc {
		return
	}
	size := max(end, min(end+preallocChunk, s.opts.SegmentSize))
	if err := preallocate(g.f, size); err != nil {
		s.noPrealloc = errors.Is(err, errors.ErrUnsupported)
		if st, serr := g.f.Stat(); serr == nil {
			g.alloc = st.Size() // a failure may have extended it part way
		}
		return
	}
	g.alloc = size
}

// tailFor returns the segment an append starting at index first goes to,
// starting a new segment when there is none, the last is full or of an
// older format version, or the log is empty and the last (empty) segment
// starts elsewhere. The segment a new one follows is synced first: only
// the newest may hold unsynced records (durable.go).
func (s *Store) tailFor(first uint64) (*segment, error) {
	if n := len(s.segs); n > 0 {
		g := s.segs[n-1]
		switch {
		case len(g.offs) == 0 && g.first == first && g.version == formatVersion:
			return g, nil
		case len(g.offs) > 0 && g.size < s.opts.SegmentSize && g.version == formatVersion:
			return g, nil
		case len(g.offs) == 0:
			// An empty segment of an empty log, starting elsewhere (an
			// append failed after creating it) or of format 1: replace it.
			s.epoch++
			if err := s.removeSegments([]*segment{g}); err != nil {
				return nil, s.fail(fmt.Errorf("%w (the log refuses writes until the node restarts)", err))
			}
		default:
			if err := s.syncTail(); err != nil {
				return nil, err
			}
		}
	}
	return s.newSegment(first)
}

// newSegment creates the segment starting at index first durably (its
// header written and synced under a temporary name, renamed, the
// directory synced) and appends it to the log.
func (s *Store) newSegment(first uint64) (*segment, error) {
	h := segmentHeader{version: formatVersion, seq: s.nextSeq, first: first, fresh: s.last == 0}
	path := filepath.Join(s.dir, segmentName(first))
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("wal: new segment: %w", err)
	}
	fail := func(err error) (*segment, error) {
		_ = f.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("wal: new segment %s: %w", path, err)
	}
	if _, err := f.Write(h.encode()); err != nil {
		return fail(err)
	}
	if !s.opts.NoSync {
		if err := syncData(f); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if !s.opts.NoSync {
		if err := fsync.Dir(s.dir); err != nil {
			_ = f.Close()
			return nil, s.fail(fmt.Errorf("wal: sync %s after creating %s: %w (the log refuses writes until the node restarts)", s.dir, path, err))
		}
	}
	s.nextSeq++
	g := &segment{path: path, f: f, segmentHeader: h, size: segmentHeaderSize, alloc: segmentHeaderSize, synced: segmentHeaderSize}
	s.mu.Lock()
	s.segs = append(s.segs, g)
	s.mu.Unlock()
	return g, nil
}

// removeSegments closes and removes segments that no reader reaches any
// more (outside first..last), in the order given, and takes them out of
// s.segs, then syncs the directory. A segment whose removal fails stays
// in s.segs (closed), with the ones after it, so that the next deletion
// tries again: one left on disk below segments removed later would be a
// gap, which recovery refuses as damage.
func (s *Store) removeSegments(gs []*segment) error {
	var err error
	removed := 0
	for _, g := range gs {
		_ = g.f.Close() // first: Windows removes no open file; closing again is harmless
		if rerr := os.Remove(g.path); rerr != nil {
			err = fmt.Errorf("wal: remove %s: %w", g.path, rerr)
			break
		}
		removed++
	}
	s.mu.Lock()
	s.segs = slices.DeleteFunc(s.segs, func(g *segment) bool { return slices.Contains(gs[:removed], g) })
	s.mu.Unlock()
	if err != nil {
		return err
	}
	if len(gs) > 0 && !s.opts.NoSync {
		if err := fsync.Dir(s.dir); err != nil {
			return fmt.Errorf("wal: sync %s: %w", s.dir, err)
		}
	}
	return nil
}
