package wal

import (
	"fmt"
	"slices"
)

// DeleteRange deletes the entries min..max (inclusive). Raft deletes in
// three ways, and only these are supported:
//   - the head, up to max (compaction after a snapshot): whole segments
//     below max are removed; entries below max in the segment that
//     remains are hidden, and reappear after a restart as what they are,
//     older entries of the same log (harmless: Raft never reads below its
//     snapshot, and compacts them again);
//   - the tail, from min (a follower's entries that conflict with the
//     leader's): durable before it returns;
//   - everything (after a snapshot is installed or restored): durable
//     before it returns, so no segment of the old log can survive a crash
//     next to the new one (recovery removes leftovers all the same).
//
// A failed tail or whole-log deletion leaves the files in a state the
// memory no longer matches: the store then refuses writes until the node
// restarts.
func (s *Store) DeleteRange(min, max uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	if s.last == 0 || max < s.first || min > s.last || min > max {
		return nil
	}
	switch {
	case min <= s.first && max >= s.last:
		return s.deleteAll()
	case min <= s.first:
		return s.deleteHead(max)
	case max >= s.last:
		return s.deleteTail(min)
	}
	return fmt.Errorf("wal: cannot delete %d..%d from the middle of the log %d..%d", min, max, s.first, s.last)
}

func (s *Store) deleteAll() error {
	s.mu.Lock()
	gs := slices.Clone(s.segs)
	s.first, s.last = 0, 0
	s.mu.Unlock()
	s.epoch++
	s.dur.truncate(0)
	slices.Reverse(gs) // newest first: a crash leaves a prefix of the log
	if err := s.removeSegments(gs); err != nil {
		return s.fail(fmt.Errorf("%w (deleting the whole log; the log refuses writes until the node restarts)", err))
	}
	return nil
}

func (s *Store) deleteHead(max uint64) error {
	s.mu.Lock()
	s.first = max + 1
	var gs []*segment
	for _, g := range s.segs {
		if g.last() <= max && len(g.offs) > 0 {
			gs = append(gs, g)
		}
	}
	s.mu.Unlock()
	// Oldest first: a crash leaves the log's newer part, contiguous.
	return s.removeSegments(gs)
}

// deleteTail deletes the entries from min on: the segments after the one
// holding min are removed newest first, then that one is cut before min
// and synced, so a crash at any point leaves a prefix of the log.
func (s *Store) deleteTail(min uint64) error {
	s.mu.Lock()
	s.last = min - 1
	var gs []*segment
	var cut *segment
	for _, g := range s.segs {
		switch {
		case g.first >= min:
			gs = append(gs, g)
		case g.last() >= min:
			cut = g
		}
	}
	var cutAt int64
	if cut != nil {
		cutAt, _ = cut.span(min)
		cut.offs = cut.offs[:min-cut.first]
		cut.size = cutAt
		cut.synced = cutAt // below: synced, or the store fails
	}
	s.mu.Unlock()
	s.epoch++
	s.dur.truncate(min - 1)
	slices.Reverse(gs)
	fail := func(err error) error {
		return s.fail(fmt.Errorf("%w (deleting entries from %d; the log refuses writes until the node restarts)", err, min))
	}
	if err := s.removeSegments(gs); err != nil {
		return fail(err)
	}
	if cut == nil {
		s.dur.advance(min - 1) // the newest segment now is one a newer one followed: synced
		return nil
	}
	if err := cut.f.Truncate(cutAt); err != nil {
		return fail(fmt.Errorf("wal: cut %s: %w", cut.path, err))
	}
	cut.alloc = cutAt
	if !s.opts.NoSync {
		if err := syncData(cut.f); err != nil {
			return fail(fmt.Errorf("wal: sync %s: %w", cut.path, err))
		}
	}
	s.dur.advance(min - 1)
	return nil
}
