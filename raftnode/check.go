package raftnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// SnapshotCheck is one snapshot CheckSnapshots read.
type SnapshotCheck struct {
	ID    string
	Index uint64
	Bytes int64
	// Leftover marks the remains of an older snapshot whose removal a
	// crash interrupted (its meta.json or state.bin already gone, a newer
	// snapshot intact): not damage. A starting node removes it.
	Leftover bool
}

// CheckSnapshots reads every snapshot in dir/snapshots (dir is a Config.Dir)
// and returns an error wrapping fsm.ErrDamaged that names the file when
// one is damaged: a meta.json that does not parse (hashicorp/raft would
// silently skip that snapshot and fall back to an older one, whose log
// may be gone), a state.bin whose size or CRC-64 differs from its
// meta.json, or a stream whose header is not an FSM snapshot's. It reads
// each retained snapshot whole (the CRC), about the state's size per
// snapshot. Unfinished snapshots (*.tmp, left by a crash) are skipped, as
// Raft skips them.
//
// With once set (a node starting) the CRC of a snapshot is checked only
// the first time: a snapshot never changes once written, and reading a
// large state's snapshots whole on every start would make restarts slow
// (ten million keys: 3 GB each). A snapshot that passed is marked with a
// file "verified" in its directory; its metadata, size and header are
// still checked on every start, and Raft checks the CRC again whenever it
// opens the snapshot to use it. Without once (cairn check) every snapshot
// is read whole and nothing is written.
func CheckSnapshots(dir string, once bool) ([]SnapshotCheck, error) {
	root := filepath.Join(dir, "snapshots")
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("raftnode: check snapshots: %w", err)
	}
	store, err := raft.NewFileSnapshotStoreWithLogger(dir, 1<<30, hclog.NewNullLogger())
	if err != nil {
		return nil, fmt.Errorf("raftnode: check snapshots: %w", err)
	}
	var out []SnapshotCheck
	leftovers := interruptedRemovals(root, entries)
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if leftovers[e.Name()] {
			if once {
				if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
					return nil, fmt.Errorf("raftnode: remove the remains of snapshot %s: %w", e.Name(), err)
				}
			}
			out = append(out, SnapshotCheck{ID: e.Name(), Leftover: true})
			continue
		}
		metaPath := filepath.Join(root, e.Name(), "meta.json")
		b, err := os.ReadFile(metaPath)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", fsm.ErrDamaged, metaPath, err)
		}
		var meta raft.SnapshotMeta
		if err := json.Unmarshal(b, &meta); err != nil || meta.ID != e.Name() {
			return nil, fmt.Errorf("%w: %s: not the metadata of snapshot %s (%v)", fsm.ErrDamaged, metaPath, e.Name(), err)
		}
		statePath := filepath.Join(root, e.Name(), "state.bin")
		st, err := os.Stat(statePath)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", fsm.ErrDamaged, statePath, err)
		}
		if st.Size() != meta.Size {
			return nil, fmt.Errorf("%w: %s: %d bytes, its meta.json says %d (truncated?)", fsm.ErrDamaged, statePath, st.Size(), meta.Size)
		}
		verified := filepath.Join(root, e.Name(), verifiedFile)
		_, verr := os.Stat(verified)
		if !once || verr != nil {
			_, rc, err := store.Open(e.Name()) // checks the CRC-64 of meta.json
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", fsm.ErrDamaged, statePath, err)
			}
			_, err = fsm.ReadSnapshotIndex(rc)
			_ = rc.Close()
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", fsm.ErrDamaged, statePath, err)
			}
			if once {
				// Best effort: without the mark the next start reads it again.
				_ = os.WriteFile(verified, []byte("the CRC of state.bin matched meta.json\n"), 0o600)
			}
		} else if err := checkSnapshotHeader(statePath); err != nil {
			return nil, err
		}
		out = append(out, SnapshotCheck{ID: e.Name(), Index: meta.Index, Bytes: meta.Size})
	}
	return out, nil
}

// verifiedFile marks a snapshot whose CRC a starting node has checked.
const verifiedFile = "verified"

// checkSnapshotHeader checks that the snapshot file at path starts with an
// FSM snapshot's header.
func checkSnapshotHeader(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", fsm.ErrDamaged, path, err)
	}
	defer f.Close()
	if _, err := fsm.ReadSnapshotIndex(f); err != nil {
		return fmt.Errorf("%w: %s: %w", fsm.ErrDamaged, path, err)
	}
	return nil
}

// interruptedRemovals returns the snapshot directories among entries (of
// root) that are the remains of a removal a crash interrupted: Raft
// removes a snapshot it no longer retains with os.RemoveAll, file by file,
// so a kill during it leaves a directory without meta.json or without
// state.bin. Raft skips the first kind for good (so it is never removed)
// and lists the second. Such a directory is a leftover only when a
// complete snapshot of a higher term and index exists; an incomplete
// newest snapshot is damage, which CheckSnapshots reports.
func interruptedRemovals(root string, entries []os.DirEntry) map[string]bool {
	type snap struct {
		name        string
		term, index uint64
		complete    bool
	}
	var snaps []snap
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		var term, index, stamp uint64
		if n, err := fmt.Sscanf(e.Name(), "%d-%d-%d", &term, &index, &stamp); n != 3 || err != nil {
			continue // not a name Raft gives: CheckSnapshots judges it
		}
		_, metaErr := os.Stat(filepath.Join(root, e.Name(), "meta.json"))
		_, stateErr := os.Stat(filepath.Join(root, e.Name(), "state.bin"))
		snaps = append(snaps, snap{e.Name(), term, index, metaErr == nil && stateErr == nil})
	}
	out := map[string]bool{}
	for _, s := range snaps {
		if s.complete {
			continue
		}
		for _, t := range snaps {
			if t.complete && (t.term > s.term || t.term == s.term && t.index > s.index) {
				out[s.name] = true
				break
			}
		}
	}
	return out
}
