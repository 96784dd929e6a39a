package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
)

// DataCheck is what CheckDataDir found, file by file.
type DataCheck struct {
	// Checked describes each file checked and what it holds.
	Checked []string
	// Warnings are damage the node recovers from by itself when it starts.
	Warnings []string
	Took     time.Duration
}

// rebuildHint points at the documented procedure for a damaged node.
const rebuildHint = `see "Disk full and damaged data" in the README`

// CheckDataDir checks every data file of the node data directory dir
// without changing anything (`cairn check`): the FSM's fsm/state.db
// (fsm.CheckDatabase: meta pages, length, every reachable page), Raft's
// log raft/wal (every record's checksum; or an older release's
// raft/raft.db, as a bbolt database) and every snapshot in raft/snapshots
// (raftnode.CheckSnapshots: metadata, size, CRC). It returns an error
// wrapping fsm.ErrDamaged that names the first damaged file of Raft's and
// what to do. A damaged state.db is a warning: it is redundant, and the
// node sets it aside and rebuilds it from its newest snapshot and its Raft
// log when it starts (fsm.Open).
func CheckDataDir(dir string) (DataCheck, error) {
	start := time.Now()
	var c DataCheck
	err := c.checkState(dir)
	if err == nil {
		err = c.checkRaft(dir, false)
	}
	c.Took = time.Since(start)
	return c, err
}

func (c *DataCheck) checkState(dir string) error {
	path := filepath.Join(dir, "fsm", "state.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	r, err := fsm.CheckDatabase(path)
	switch {
	case errors.Is(err, fsm.ErrDamaged):
		c.Warnings = append(c.Warnings, userMessage(err)+"; cairn serve sets it aside and rebuilds it from the newest snapshot and the Raft log")
	case err != nil:
		return err
	case r.RecoveredMeta:
		c.Warnings = append(c.Warnings, r.Warning+"; cairn serve sets it aside and rebuilds it from the newest snapshot and the Raft log")
	default:
		c.Checked = append(c.Checked, fmt.Sprintf("%s: %d bytes, %d keys", path, r.Bytes, r.Keys))
	}
	return nil
}

// checkRaft checks Raft's log and snapshots, which are not redundant: a
// node with a damaged one must not start (StartNode). The log is the WAL
// (raftnode.CheckLog: every record's checksum), or, in a directory an
// older release wrote and this one has yet to migrate, raft.db (checked as
// a bbolt database). With once, each snapshot's CRC is checked only the
// first time (raftnode.CheckSnapshots).
func (c *DataCheck) checkRaft(dir string, once bool) error {
	raftDir := filepath.Join(dir, "raft")
	l, ok, err := raftnode.CheckLog(raftDir)
	if err != nil {
		return fmt.Errorf("%w; this node must be rebuilt from its peers: %s", err, rebuildHint)
	}
	if ok {
		c.Checked = append(c.Checked, fmt.Sprintf("%s: %d segments, %d bytes, entries %d..%d", l.Path, l.Segments, l.Bytes, l.First, l.Last))
		for _, n := range l.Notes {
			if !once { // a starting node logs what the log store repairs itself
				c.Warnings = append(c.Warnings, n+" when cairn serve starts")
			}
		}
	} else if err := c.checkLegacyLog(filepath.Join(raftDir, "raft.db")); err != nil {
		return err
	}
	snaps, err := raftnode.CheckSnapshots(raftDir, once)
	if err != nil {
		return fmt.Errorf("%w; move that snapshot's directory aside if a newer snapshot is intact, otherwise rebuild this node from its peers: %s", err, rebuildHint)
	}
	for _, s := range snaps {
		path := filepath.Join(dir, "raft", "snapshots", s.ID)
		switch {
		case s.Leftover && once:
			c.Warnings = append(c.Warnings, path+": the remains of an old snapshot whose removal a crash interrupted: removed")
		case s.Leftover:
			c.Warnings = append(c.Warnings, path+": the remains of an old snapshot whose removal a crash interrupted: removed when cairn serve starts")
		default:
			c.Checked = append(c.Checked, fmt.Sprintf("%s: snapshot at index %d, %d bytes", path, s.Index, s.Bytes))
		}
	}
	return nil
}

// checkLegacyLog checks the raft-boltdb log at path that a node of an
// older release left, which cairn serve migrates to the WAL when it starts.
func (c *DataCheck) checkLegacyLog(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("server: check %s: %w", path, err)
	}
	r, err := fsm.CheckDatabase(path)
	if errors.Is(err, fsm.ErrInUse) {
		return err
	}
	if err == nil && r.RecoveredMeta {
		err = fmt.Errorf("%w: %s (it may have lost log entries this node acknowledged)", fsm.ErrDamaged, r.Warning)
	}
	if err != nil {
		return fmt.Errorf("%w; this node must be rebuilt from its peers: %s", err, rebuildHint)
	}
	c.Checked = append(c.Checked, fmt.Sprintf("%s: %d bytes, %d keys (to be migrated to raft/wal when cairn serve starts)", path, r.Bytes, r.Keys))
	return nil
}
