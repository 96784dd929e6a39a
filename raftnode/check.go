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
func CheckSnapshots(dir string) ([]SnapshotCheck, error) {
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
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
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
		_, rc, err := store.Open(e.Name()) // checks the CRC-64 of meta.json
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", fsm.ErrDamaged, statePath, err)
		}
		_, err = fsm.ReadSnapshotIndex(rc)
		_ = rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", fsm.ErrDamaged, statePath, err)
		}
		out = append(out, SnapshotCheck{ID: e.Name(), Index: meta.Index, Bytes: meta.Size})
	}
	return out, nil
}
