package raftnode

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// writeBoltLog writes, as releases before the WAL did, a raft-boltdb log
// at dir/raft.db holding the entries of indexes and the stable keys.
func writeBoltLog(t *testing.T, dir string, indexes [][2]uint64, stable map[string][]byte) map[uint64]*raft.Log {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, legacyLog), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[uint64]*raft.Log{}
	for _, r := range indexes {
		var ls []*raft.Log
		for i := r[0]; i <= r[1]; i++ {
			l := &raft.Log{Index: i, Term: i / 10, Type: raft.LogCommand, Data: []byte{byte(i), 1, 2}, AppendedAt: time.Unix(0, int64(i)*1e6)}
			if i%7 == 0 {
				l.Type, l.Extensions, l.AppendedAt = raft.LogConfiguration, []byte("ext"), time.Time{}
			}
			ls = append(ls, l)
			want[i] = l
		}
		if err := s.StoreLogs(ls); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range stable {
		if err := s.Set([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

// TestMigrateBoltLog: a Raft directory of an older release (raft.db) is
// migrated when the store opens: the log's newest contiguous run (a
// raft-boltdb log has a gap below a snapshot Raft installed) and the
// stable keys, entry for entry; raft.db is gone, and the migration's
// temporary directory too. A migration interrupted before its rename
// (a leftover temporary directory) is redone, and one interrupted after
// it (both logs present) only removes raft.db.
func TestMigrateBoltLog(t *testing.T) {
	stable := map[string][]byte{"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 9}, "LastVoteTerm": {0, 0, 0, 0, 0, 0, 0, 8}, "LastVoteCand": []byte("n2")}
	for _, interrupted := range []string{"", "before rename", "after rename"} {
		dir := t.TempDir()
		want := writeBoltLog(t, dir, [][2]uint64{{1, 20}, {40, 95}}, stable)
		switch interrupted {
		case "before rename":
			if err := os.MkdirAll(filepath.Join(dir, walDir+".migrating"), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, walDir+".migrating", "00000000000000000001.wal"), []byte("junk"), 0o600); err != nil {
				t.Fatal(err)
			}
		case "after rename":
			if err := migrateBoltLog(dir, hclog.NewNullLogger()); err != nil {
				t.Fatal(err)
			}
			writeBoltLog(t, dir, [][2]uint64{{1, 3}}, nil) // must not be copied again
		}
		s, err := openLogStore(dir, wal.Options{}, raft.NewInmemSnapshotStore(), hclog.NewNullLogger())
		if err != nil {
			t.Fatalf("%s: %v", interrupted, err)
		}
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		if first != 40 || last != 95 {
			t.Fatalf("%s: migrated log %d..%d, want 40..95", interrupted, first, last)
		}
		for i := first; i <= last; i++ {
			var got raft.Log
			if err := s.GetLog(i, &got); err != nil {
				t.Fatal(err)
			}
			w := want[i]
			if got.Index != w.Index || got.Term != w.Term || got.Type != w.Type || !bytes.Equal(got.Data, w.Data) ||
				!bytes.Equal(got.Extensions, w.Extensions) || !got.AppendedAt.Equal(w.AppendedAt) {
				t.Fatalf("%s: entry %d: %+v, want %+v", interrupted, i, got, *w)
			}
		}
		for k, v := range stable {
			if got, err := s.Get([]byte(k)); err != nil || !bytes.Equal(got, v) {
				t.Fatalf("%s: stable key %s: %q %v, want %q", interrupted, k, got, err, v)
			}
		}
		if term, err := s.GetUint64([]byte("CurrentTerm")); term != 9 || err != nil {
			t.Fatalf("%s: CurrentTerm %d %v", interrupted, term, err)
		}
		_ = s.Close()
		for _, gone := range []string{legacyLog, walDir + ".migrating"} {
			if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s: %s still there after the migration: %v", interrupted, gone, err)
			}
		}
	}
}

// TestMigrateEmptyBoltLog: a raft.db holding only a term (a node that
// voted but never received an entry) migrates to an empty log with that
// term.
func TestMigrateEmptyBoltLog(t *testing.T) {
	dir := t.TempDir()
	writeBoltLog(t, dir, nil, map[string][]byte{"CurrentTerm": {0, 0, 0, 0, 0, 0, 0, 3}})
	s, err := openLogStore(dir, wal.Options{}, raft.NewInmemSnapshotStore(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if last, _ := s.LastIndex(); last != 0 {
		t.Fatalf("last index %d", last)
	}
	if term, err := s.GetUint64([]byte("CurrentTerm")); term != 3 || err != nil {
		t.Fatalf("CurrentTerm %d %v", term, err)
	}
	if _, err := s.Get([]byte("LastVoteCand")); err == nil || err.Error() != "not found" {
		t.Fatalf("LastVoteCand: %v", err)
	}
}
