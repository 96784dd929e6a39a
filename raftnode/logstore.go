package raftnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Raft's log and stable store live in Dir/wal (package wal). Releases
// before it kept them in Dir/raft.db (raft-boltdb); openLogStore migrates
// such a directory first (migrate.go).
const (
	walDir    = "wal"
	legacyLog = "raft.db"
)

// openLogStore opens the log and stable store of the Raft directory dir,
// migrating a raft-boltdb log first, and logs what recovery repaired. A
// damaged log is refused with an error wrapping fsm.ErrDamaged. snaps is
// the node's snapshot store: an append past a gap starts the log again
// only when its newest snapshot covers the gap (opts.SnapshotIndex is set
// to say so).
func openLogStore(dir string, opts wal.Options, snaps raft.SnapshotStore, logger hclog.Logger) (*wal.Store, error) {
	if err := migrateBoltLog(dir, logger); err != nil {
		return nil, err
	}
	opts.SnapshotIndex = newestSnapshotIndex(snaps)
	s, err := wal.Open(filepath.Join(dir, walDir), opts)
	if err != nil {
		return nil, fmt.Errorf("raftnode: log store: %w", damaged(err))
	}
	for _, note := range s.Notes() {
		logger.Warn("log store recovered: " + note)
	}
	return s, nil
}

// newestSnapshotIndex returns a function that reports the highest index
// of the snapshots in snaps (0: none).
func newestSnapshotIndex(snaps raft.SnapshotStore) func() (uint64, error) {
	return func() (uint64, error) {
		metas, err := snaps.List()
		if err != nil {
			return 0, fmt.Errorf("list snapshots: %w", err)
		}
		var index uint64
		for _, m := range metas {
			index = max(index, m.Index)
		}
		return index, nil
	}
}

// damaged turns the log store's *wal.DamageError into an error wrapping
// fsm.ErrDamaged that names the file, as every damaged data file is
// reported (server/datacheck.go, `cairn check`).
func damaged(err error) error {
	var de *wal.DamageError
	if !errors.As(err, &de) {
		return err
	}
	return fmt.Errorf("%w: %s: at offset %d: %s", fsm.ErrDamaged, de.Path, de.Offset, de.Reason)
}

// LogCheck is what CheckLog found.
type LogCheck struct {
	Path        string // the log's directory
	Segments    int
	First, Last uint64
	Bytes       int64
	// Notes are the repairs the node makes when it starts: what a crash
	// leaves (a torn last write), not damage.
	Notes []string
}

// CheckLog checks Raft's log in the Raft directory dir (Dir/wal), every
// record's checksum included, changing nothing; an error wrapping
// fsm.ErrDamaged names a damaged file. ok is false when dir has no such
// log (a new node, or one whose raft-boltdb log, Dir/raft.db, is still to
// be migrated: the caller checks that file as a bbolt database).
func CheckLog(dir string) (c LogCheck, ok bool, err error) {
	c.Path = filepath.Join(dir, walDir)
	if _, err := os.Stat(c.Path); errors.Is(err, os.ErrNotExist) {
		return c, false, nil
	}
	r, err := wal.Check(c.Path)
	if err != nil {
		return c, true, damaged(err)
	}
	c.Segments, c.First, c.Last, c.Bytes, c.Notes = r.Segments, r.First, r.Last, r.Bytes, r.Notes
	return c, true, nil
}
