package raftnode

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestCheckSnapshotsOnce: a starting node reads a snapshot whole (its CRC)
// the first time only and marks it; later starts check its metadata, size
// and header. cairn check (once unset) always reads it whole.
func TestCheckSnapshotsOnce(t *testing.T) {
	dir := t.TempDir()
	store, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	snapDir := filepath.Join(dir, "snapshots", writeSnapshot(t, store, 5, 1))

	if _, err := CheckSnapshots(dir, true); err != nil {
		t.Fatalf("first check: %v", err)
	}
	if _, err := os.Stat(filepath.Join(snapDir, verifiedFile)); err != nil {
		t.Fatalf("a snapshot that passed is not marked: %v", err)
	}
	state := filepath.Join(snapDir, "state.bin")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-6] ^= 0xff // a record byte: only the CRC can tell
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckSnapshots(dir, true); err != nil {
		t.Fatalf("a marked snapshot was read whole again: %v", err)
	}
	if _, err := CheckSnapshots(dir, false); !errors.Is(err, fsm.ErrDamaged) {
		t.Fatalf("full check of a damaged snapshot: %v, want ErrDamaged", err)
	}
	b[0] ^= 0xff // the header: checked on every start
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckSnapshots(dir, true); !errors.Is(err, fsm.ErrDamaged) {
		t.Fatalf("a marked snapshot with a damaged header: %v, want ErrDamaged", err)
	}
}

// TestUnfinishedSnapshotsRemoved: snapshot directories a crash left
// unfinished are deleted when a node opens its stores; finished ones stay.
func TestUnfinishedSnapshotsRemoved(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"2-10-100.tmp", "2-20-200"} {
		if err := os.MkdirAll(filepath.Join(dir, "snapshots", d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	removeUnfinishedSnapshots(dir, hclog.NewNullLogger())
	if _, err := os.Stat(filepath.Join(dir, "snapshots", "2-10-100.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unfinished snapshot still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshots", "2-20-200")); err != nil {
		t.Fatalf("a finished snapshot was removed: %v", err)
	}
}

// TestInterruptedSnapshotRemoval: Raft removes a snapshot it no longer
// retains file by file, so a kill -9 during it leaves a directory without
// state.bin (or without meta.json). With a newer snapshot intact that is
// no damage: cairn check reports it, a starting node removes it and
// starts. An incomplete newest snapshot is still damage.
func TestInterruptedSnapshotRemoval(t *testing.T) {
	dir := t.TempDir()
	store, err := raft.NewFileSnapshotStore(dir, 3, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, index := range []uint64{5, 9, 12} {
		ids = append(ids, writeSnapshot(t, store, index, 2))
	}
	root := filepath.Join(dir, "snapshots")
	// The two older snapshots lost one file each to an interrupted removal.
	if err := os.Remove(filepath.Join(root, ids[0], "meta.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, ids[1], "state.bin")); err != nil {
		t.Fatal(err)
	}
	checks, err := CheckSnapshots(dir, false)
	if err != nil {
		t.Fatalf("check with the remains of removals next to an intact snapshot: %v", err)
	}
	leftovers := 0
	for _, c := range checks {
		if c.Leftover {
			leftovers++
		}
	}
	if leftovers != 2 || len(checks) != 3 {
		t.Fatalf("checks %+v: want 2 leftovers and the intact snapshot", checks)
	}
	for _, id := range ids[:2] {
		if _, err := os.Stat(filepath.Join(root, id)); err != nil {
			t.Fatalf("cairn check changed the directory: %v", err)
		}
	}
	if _, err := CheckSnapshots(dir, true); err != nil {
		t.Fatalf("start with the remains of removals: %v", err)
	}
	for _, id := range ids[:2] {
		if _, err := os.Stat(filepath.Join(root, id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the remains of %s are still there after a start: %v", id, err)
		}
	}
	if checks, err := CheckSnapshots(dir, true); err != nil || len(checks) != 1 || checks[0].ID != ids[2] {
		t.Fatalf("after the start: %+v, %v; want only %s", checks, err, ids[2])
	}
	// The newest snapshot incomplete: damage, whatever is older.
	if err := os.Remove(filepath.Join(root, ids[2], "state.bin")); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckSnapshots(dir, true); !errors.Is(err, fsm.ErrDamaged) {
		t.Fatalf("an incomplete newest snapshot: %v, want ErrDamaged", err)
	}
}

// writeSnapshot writes an empty FSM's snapshot at index and term into
// store and returns its id.
func writeSnapshot(t *testing.T, store raft.SnapshotStore, index, term uint64) string {
	t.Helper()
	f, err := fsm.Open(fsm.Options{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink, err := store.Create(raft.SnapshotVersionMax, index, term, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap.WriteTo(sink); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}
