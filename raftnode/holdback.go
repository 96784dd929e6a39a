package raftnode

import (
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// While the leader sends a follower a snapshot, and for a while after, it
// keeps the log entries from the snapshot's last index on: the follower
// needs those after it next, and the leader the last one's term to send
// them (unless the snapshot is still its newest). hashicorp/raft compacts after every snapshot it takes, keeping only
// TrailingLogs entries; when more writes than that come during an install,
// it has compacted past the snapshot it sent, cannot send the entries after
// it ("failed to get log"), and sends a newer snapshot, for as long as
// writes outpace installs: the follower never catches up. The hold makes
// compaction on the leader stop before the oldest held index
// (holdingLogStore); it ends with a send that fails (Raft sends its newest
// snapshot again, a follower that is down holds nothing back),
// holdAfterInstall (or as long as the install took, if longer) after an
// install, and in any case maxHold after it started, so that a follower
// that stalls cannot make the log grow without bound.
const (
	holdAfterInstall = 30 * time.Second
	maxHold          = 30 * time.Minute
)

// compactionHold is the set of snapshots being sent, or just sent, per
// follower. Safe for concurrent use.
type compactionHold struct {
	mu       sync.Mutex
	holds    map[raft.ServerID]snapshotHold
	installs map[raft.ServerID]int // snapshots installed, per follower (installed)
}

type snapshotHold struct {
	keep       uint64    // the entries from it on stay
	start, end time.Time // end is zero while the install runs
}

// begin holds the entries from index on for a snapshot sent to id whose
// last entry is index, and returns what ends the send, saying whether the
// follower installed it.
func (h *compactionHold) begin(id raft.ServerID, index uint64) (done func(installed bool)) {
	start := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holds == nil {
		h.holds = make(map[raft.ServerID]snapshotHold)
	}
	h.holds[id] = snapshotHold{keep: index, start: start}
	return func(installed bool) {
		h.mu.Lock()
		defer h.mu.Unlock()
		cur, ok := h.holds[id]
		if !ok || !cur.start.Equal(start) {
			return
		}
		if !installed { // Raft sends its newest snapshot again, held anew
			delete(h.holds, id)
			return
		}
		if h.installs == nil {
			h.installs = make(map[raft.ServerID]int)
		}
		h.installs[id]++
		cur.end = time.Now()
		h.holds[id] = cur
	}
}

// installed returns how many snapshots follower id installed.
func (h *compactionHold) installed(id raft.ServerID) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.installs[id]
}

// keep returns the first index that compaction must keep now, and
// whether any hold applies; it drops the holds that have ended.
func (h *compactionHold) keep(now time.Time) (uint64, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var keep uint64
	held := false
	for id, s := range h.holds {
		if s.expired(now) {
			delete(h.holds, id)
			continue
		}
		if !held || s.keep < keep {
			keep = s.keep
		}
		held = true
	}
	return keep, held
}

func (s snapshotHold) expired(now time.Time) bool {
	if now.Sub(s.start) > maxHold {
		return true
	}
	return !s.end.IsZero() && now.Sub(s.end) > max(holdAfterInstall, s.end.Sub(s.start))
}

// holdingLogStore is the log store as Raft sees it on this node: a
// compaction (a deletion from the log's head) stops before the newest
// snapshot's last entry, and on the leader before the held index.
type holdingLogStore struct {
	raft.LogStore
	snapshots raft.SnapshotStore
	hold      *compactionHold
	leading   func() bool
	log       func(msg string, args ...any)
}

func (s holdingLogStore) DeleteRange(min, max uint64) error {
	first, ferr := s.LogStore.FirstIndex()
	last, lerr := s.LogStore.LastIndex()
	if ferr != nil || lerr != nil || min > first || max >= last {
		// Not a compaction (which deletes from the head and keeps
		// TrailingLogs): a follower cutting a conflicting suffix.
		return s.LogStore.DeleteRange(min, max)
	}
	// The newest snapshot's last entry stays: a leader that sends that
	// snapshot and meanwhile takes another one needs the entry's term to
	// send the entries after it (Raft's compaction deletes it when more
	// than TrailingLogs entries came while the snapshot was taken, before
	// any send could hold it).
	if metas, err := s.snapshots.List(); err == nil && len(metas) > 0 && max >= metas[0].Index {
		if metas[0].Index <= min {
			return nil
		}
		max = metas[0].Index - 1
	}
	if keep, held := s.hold.keep(time.Now()); held && max >= keep && s.leading() {
		s.log("keeping the log for a snapshot sent to a follower", "compaction_to", max, "kept_from", keep)
		if keep <= min {
			return nil
		}
		max = keep - 1
	}
	return s.LogStore.DeleteRange(min, max)
}

// InstallSnapshot sends a snapshot, holding the entries after it.
func (t durableTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	done := t.hold.begin(id, args.LastLogIndex)
	err := t.NetworkTransport.InstallSnapshot(id, target, args, resp, data)
	done(err == nil && resp.Success)
	return err
}
