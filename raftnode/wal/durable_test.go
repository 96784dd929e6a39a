package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// commands returns entries from..to as entries does, all commands (no
// configuration entry, which is synced before StoreLogs returns).
func commands(from, to uint64) []*raft.Log {
	ls := entries(from, to, 1)
	for _, l := range ls {
		l.Type = raft.LogCommand
	}
	return ls
}

// wantCommands checks that s holds exactly the entries first..last, as
// commands makes them.
func wantCommands(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != first || l != last {
		t.Fatalf("log holds %d..%d, want %d..%d", f, l, first, last)
	}
	for i := first; i <= last; i++ {
		var got raft.Log
		want := commands(i, i)[0]
		if err := s.GetLog(i, &got); err != nil || got.Type != raft.LogCommand || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("GetLog(%d) = %+v, %v; want %+v", i, got, err, *want)
		}
	}
}

// syncGate holds the background syncer before its fdatasync until the
// test lets it go: entered says it is waiting.
type syncGate struct {
	entered, release chan struct{}
	once             sync.Once
}

func newSyncGate() *syncGate {
	return &syncGate{entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *syncGate) hook() {
	g.entered <- struct{}{}
	<-g.release
}

// open lets every sync through from now on.
func (g *syncGate) open() { g.once.Do(func() { close(g.release) }) }

// passUntil lets syncs through one at a time until s's durable index
// reaches index.
func (g *syncGate) passUntil(t *testing.T, s *Store, index uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Durable() < index {
		if time.Now().After(deadline) {
			t.Fatalf("durable index %d, want %d", s.Durable(), index)
		}
		select {
		case g.release <- struct{}{}:
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// openStore opens a store in dir whose syncer waits at gate, and opens
// the gate when the test ends, before the store is closed.
func openStore(t *testing.T, dir string, gate *syncGate, opts Options) *Store {
	opts.BeforeSync = gate.hook
	s := mustOpen(t, dir, opts)
	t.Cleanup(gate.open)
	return s
}

func (g *syncGate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the syncer never started a sync")
	}
}

// TestAppendReturnsBeforeSync: StoreLogs returns once the entries are
// written, readable at once, while the syncer's fdatasync is held; they
// count as durable only once it completes (WaitDurable, Durable), and a
// sync covers the appends made while it waited.
func TestAppendReturnsBeforeSync(t *testing.T) {
	gate := newSyncGate()
	s := openStore(t, t.TempDir(), gate, Options{})
	mustStore(t, s, commands(1, 3))
	gate.waitEntered(t)
	mustStore(t, s, commands(4, 6)) // appends go on while a sync is held
	var l raft.Log
	if err := s.GetLog(6, &l); err != nil || l.Index != 6 {
		t.Fatalf("GetLog(6) of a written, unsynced entry: %+v %v", l, err)
	}
	if d := s.Durable(); d != 0 {
		t.Fatalf("durable index %d while the only sync is held, want 0", d)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitDurable(6) }()
	select {
	case err := <-done:
		t.Fatalf("WaitDurable(6) returned (%v) while the sync is held", err)
	default:
	}
	gate.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := s.Durable(); d != 6 {
		t.Fatalf("durable index %d, want 6", d)
	}
	if err := s.Synced(); err != nil {
		t.Fatal(err)
	}
}

// TestInlineSyncs: configuration entries, and every append when
// SyncInline says so, are durable when StoreLogs returns, without the
// syncer (held for good here).
func TestInlineSyncs(t *testing.T) {
	gate := newSyncGate()
	inline := false
	s := openStore(t, t.TempDir(), gate, Options{SyncInline: func() bool { return inline }})
	mustStore(t, s, commands(1, 2))
	gate.waitEntered(t)
	conf := commands(3, 3)
	conf[0].Type = raft.LogConfiguration
	mustStore(t, s, conf)
	if d := s.Durable(); d != 3 {
		t.Fatalf("durable index %d after appending a configuration entry, want 3", d)
	}
	inline = true
	mustStore(t, s, commands(4, 5))
	if d := s.Durable(); d != 5 {
		t.Fatalf("durable index %d after an inline append, want 5", d)
	}
}

// crashCopy copies the log directory of s as a crash would leave it if
// every write had reached the disk: the page cache's view.
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// recordOffset returns where the record of index i starts in s's newest
// segment, and that segment's file name.
func recordOffset(s *Store, i uint64) (string, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.segs[len(s.segs)-1]
	off, _ := g.span(i)
	return filepath.Base(g.path), off
}

// TestTornUnsyncedWrites: appends go on while earlier ones are unsynced,
// so a power loss can tear a write with later, intact writes after it.
// Those later writes were made while the torn one was not yet durable,
// and their tags say so: recovery cuts the log before the torn write and
// keeps what was durable. A bad record that was durable before a later
// write was made is damage, as before.
func TestTornUnsyncedWrites(t *testing.T) {
	gate := newSyncGate()
	dir := t.TempDir()
	s := openStore(t, dir, gate, Options{})
	mustStore(t, s, commands(1, 2))
	gate.passUntil(t, s, 2)
	mustStore(t, s, commands(3, 4)) // unsynced: its sync is held
	gate.waitEntered(t)
	mustStore(t, s, commands(5, 6)) // written while 3 is not durable
	name, off := recordOffset(s, 3)

	torn := crashCopy(t, dir)
	flip(t, filepath.Join(torn, name), off+recordHeaderSize+3) // inside the record's payload
	r := mustOpen(t, torn, Options{})
	wantCommands(t, r, 1, 2)
	if n := r.Notes(); len(n) != 1 || !strings.Contains(n[0], "torn write") {
		t.Fatalf("notes %q, want one torn write", n)
	}

	// Once 3..6 are durable, a write after them carries a tag past 3: a
	// bad record 3 is then damage.
	gate.passUntil(t, s, 6)
	mustStore(t, s, commands(7, 8))
	damaged := crashCopy(t, dir)
	flip(t, filepath.Join(damaged, name), off+recordHeaderSize+3)
	_, err := Open(damaged, Options{})
	var de *DamageError
	if !errors.As(err, &de) {
		t.Fatalf("open with a bad durable record followed by a later write: %v, want a *DamageError", err)
	}
}

// TestVersion1SegmentKept: a segment of format version 1 (the release
// before background syncs) is read as it is and never appended to: the
// next append starts a version 2 segment, and both reopen intact.
func TestVersion1SegmentKept(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	for i := uint64(1); i <= 6; i += 2 { // each write synced before the next: version 1's tags
		mustStore(t, s, commands(i, i+1))
		if err := s.WaitDurable(i + 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	if len(segs) != 1 {
		t.Fatalf("segments %q, want one", segs)
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	le.PutUint32(b[8:], 1)
	le.PutUint32(b[32:], checksum(b[:32]))
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, dir, Options{})
	wantCommands(t, s, 1, 6)
	mustStore(t, s, commands(7, 8))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if segs := segmentFiles(t, dir); len(segs) != 2 {
		t.Fatalf("segments %q after appending to a version 1 log, want a new one", segs)
	}
	s = mustOpen(t, dir, Options{})
	wantCommands(t, s, 1, 8)
}

// TestEmptyVersion1SegmentReplaced: a format 1 segment left empty (a crash
// cut its only, torn, record) is replaced, not appended to: format 2
// records in it would read as format 1 damage, and be cut off as a torn
// write at the next start.
func TestEmptyVersion1SegmentReplaced(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, Options{})
	mustStore(t, s, commands(5, 5))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segmentFiles(t, dir)
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b = b[:segmentHeaderSize]
	le.PutUint32(b[8:], 1)
	le.PutUint32(b[32:], checksum(b[:32]))
	if err := os.WriteFile(segs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, dir, Options{})
	mustStore(t, s, commands(5, 7))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir, Options{})
	wantCommands(t, s, 5, 7)
	if n := s.Notes(); len(n) != 0 {
		t.Fatalf("reopening repaired %q, want nothing", n)
	}
}

// TestSyncerRacesDeletion: the syncer's fdatasync runs outside the
// writers' lock while deletions close segment files; under -race this
// found a sync on a file another goroutine closed. Every entry written
// last stays durable.
func TestSyncerRacesDeletion(t *testing.T) {
	s := mustOpen(t, t.TempDir(), Options{SegmentSize: 4 << 10})
	next := uint64(1)
	for round := 0; round < 200; round++ {
		mustStore(t, s, commands(next, next+3))
		switch round % 3 {
		case 0:
			if err := s.DeleteRange(1, next+3); err != nil { // the whole log
				t.Fatal(err)
			}
		case 1:
			if err := s.DeleteRange(next+2, next+3); err != nil { // its tail
				t.Fatal(err)
			}
			next -= 2
		}
		next += 4
	}
	last, _ := s.LastIndex()
	if err := s.WaitDurable(last); err != nil {
		t.Fatal(err)
	}
	if d := s.Durable(); d != last {
		t.Fatalf("durable index %d, want the last entry %d", d, last)
	}
}
