package raftnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cairndb/cairn/raftnode/wal"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// stableKeys are the keys hashicorp/raft keeps in its stable store.
var stableKeys = []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand"}

// migrateBoltLog moves the raft-boltdb log of the Raft directory dir
// (Dir/raft.db, written by releases before the WAL) into a new WAL, once:
// every entry of the log's newest contiguous run and the stable keys are
// copied into Dir/wal.migrating, which is synced and renamed to Dir/wal;
// then raft.db is removed. A crash before the rename leaves raft.db as it
// was (the next start begins again); after it, the next start finds both
// and removes raft.db.
//
// raft.db is removed rather than kept: an older release started on this
// directory must not find a log and term that stopped moving at the
// upgrade (it could vote twice in a term); a release cannot be downgraded
// past this migration.
//
// Only the newest contiguous run is copied: raft-boltdb took gaps (Raft
// leaves one below a snapshot it installs or restores, at an index the
// node's snapshots cover), which the WAL does not.
func migrateBoltLog(dir string, logger hclog.Logger) error {
	legacy, target := filepath.Join(dir, legacyLog), filepath.Join(dir, walDir)
	if _, err := os.Stat(legacy); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	if _, err := os.Stat(target); err == nil {
		logger.Info("removing raft.db, whose log a finished migration copied into wal/")
		return removeSynced(legacy)
	}
	tmp := target + ".migrating"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("raftnode: migrate raft.db: %w", err)
	}
	start := time.Now()
	first, last, err := copyBoltLog(legacy, tmp)
	if err != nil {
		return fmt.Errorf("raftnode: migrate raft.db to the WAL: %w", err)
	}
	if err := os.Rename(tmp, target); err != nil {
		return fmt.Errorf("raftnode: migrate raft.db: %w", err)
	}
	if err := wal.SyncDir(dir); err != nil {
		return fmt.Errorf("raftnode: migrate raft.db: %w", err)
	}
	logger.Info("migrated the Raft log from raft.db (raft-boltdb) to wal/", "first", first, "last", last, "took", time.Since(start).Round(time.Millisecond))
	return removeSynced(legacy)
}

// copyBoltLog copies the raft-boltdb log at path into a new, synced WAL
// in dir, returning the indexes of the entries copied.
func copyBoltLog(path, dir string) (first, last uint64, err error) {
	src, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType},
	})
	if err != nil {
		return 0, 0, err
	}
	defer src.Close()
	dst, err := wal.Open(dir, wal.Options{})
	if err != nil {
		return 0, 0, err
	}
	defer dst.Close()
	if first, err = src.FirstIndex(); err != nil {
		return 0, 0, err
	}
	if last, err = src.LastIndex(); err != nil {
		return 0, 0, err
	}
	// The newest contiguous run starts after the newest gap.
	var l raft.Log
	runStart := last
	for runStart > first {
		if err := src.GetLog(runStart-1, &l); errors.Is(err, raft.ErrLogNotFound) {
			break
		} else if err != nil {
			return 0, 0, err
		}
		runStart--
	}
	const batchBytes = 4 << 20
	var batch []*raft.Log
	size := 0
	for i := runStart; i <= last && last > 0; i++ {
		e := new(raft.Log)
		if err := src.GetLog(i, e); err != nil {
			return 0, 0, fmt.Errorf("entry %d: %w", i, err)
		}
		batch = append(batch, e)
		size += len(e.Data) + len(e.Extensions)
		if size >= batchBytes || len(batch) == 1024 || i == last {
			if err := dst.StoreLogs(batch); err != nil {
				return 0, 0, err
			}
			batch, size = batch[:0], 0
		}
	}
	if err := dst.Synced(); err != nil {
		return 0, 0, err
	}
	for _, k := range stableKeys {
		v, err := src.Get([]byte(k))
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return 0, 0, err
		}
		if err := dst.Set([]byte(k), v); err != nil {
			return 0, 0, err
		}
	}
	if last == 0 {
		return 0, 0, nil
	}
	return runStart, last, nil
}

// removeSynced removes the file at path durably.
func removeSynced(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	if err := wal.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	return nil
}
