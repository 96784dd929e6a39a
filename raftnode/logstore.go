package raftnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/go-hclog"
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
// damaged log is refused with an error wrapping fsm.ErrDamaged.
func openLogStore(dir string, noSync bool, logger hclog.Logger) (*wal.Store, error) {
	if err := migrateBoltLog(dir, logger); err != nil {
		return nil, err
	}
	s, err := wal.Open(filepath.Join(dir, walDir), wal.Options{NoSync: noSync})
	if err != nil {
		return nil, fmt.Errorf("raftnode: log store: %w", damaged(err))
	}
	for _, note := range s.Notes() {
		logger.Warn("log store recovered: " + note)
	}
	return s, nil
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
