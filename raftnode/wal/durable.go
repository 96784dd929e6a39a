package wal

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// Appends and durability. StoreLogs writes a batch and returns; a
// background syncer fdatasyncs what has been written (several appends at
// once when they come faster than a sync) and advances the durable index.
// hashicorp/raft's leader sends entries to its followers only after
// StoreLogs returns: this way its own sync runs while they write theirs,
// as etcd's leader does, instead of before. No command counts until it is
// durable, and the callers see to that with WaitDurable and Synced
// (raftnode/DESIGN.md, "Background sync"): the FSM applies no entry that
// is not durable here, a node answers no append before it is, and the
// leader tells no follower an entry is committed before it is durable on
// the leader. Configuration entries, whose commitment hashicorp/raft acts
// on by itself, are synced before StoreLogs returns. (Barriers and no-ops
// carry no state: Raft answers them without the FSM.)
//
// Only the newest segment can hold unsynced records: starting a new one
// syncs the one before. The records say which indexes were not yet durable
// when they were written (their tag), so that recovery can tell the torn,
// unsynced tail a crash leaves from damage (segment.go).

// durability is the durable and the written index, and the waiters for
// the first to reach the second.
type durability struct {
	mu      sync.Mutex
	cond    *sync.Cond
	durable uint64 // every entry up to here is durable
	written uint64 // the log's last entry (0: none)
	err     error  // why no entry will become durable any more
}

func (d *durability) init(last uint64) {
	d.cond = sync.NewCond(&d.mu)
	d.durable, d.written = last, last
}

// wrote records that the log's last entry is now last.
func (d *durability) wrote(last uint64) {
	d.mu.Lock()
	d.written = last
	d.mu.Unlock()
}

// advance records that every entry up to index is durable.
func (d *durability) advance(index uint64) {
	d.mu.Lock()
	if index > d.durable {
		d.durable = index
		d.cond.Broadcast()
	}
	d.mu.Unlock()
}

// truncate records that the log now ends at last (a deletion).
func (d *durability) truncate(last uint64) {
	d.mu.Lock()
	d.written, d.durable = last, min(d.durable, last)
	d.cond.Broadcast()
	d.mu.Unlock()
}

// fail wakes every waiter with err, for good.
func (d *durability) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.cond.Broadcast()
	d.mu.Unlock()
}

// nextTag is the tag of a record written now: the first index that is not
// yet durable.
func (d *durability) nextTag() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.durable + 1
}

// WaitDurable blocks until every entry up to index is durable, or up to
// the log's last entry when index is past it (entries deleted meanwhile
// are no longer waited for). It returns an error, at once and for good,
// when the store can make no more entries durable: a sync failed, or the
// store was closed.
func (s *Store) WaitDurable(index uint64) error {
	d := &s.dur
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.durable < min(index, d.written) {
		if d.err != nil {
			return d.err
		}
		d.cond.Wait()
	}
	return nil
}

// Synced blocks until every entry written when it is called is durable
// (WaitDurable): appends made meanwhile do not hold it back.
func (s *Store) Synced() error {
	s.dur.mu.Lock()
	written := s.dur.written
	s.dur.mu.Unlock()
	return s.WaitDurable(written)
}

// Durable returns the index up to which every entry is durable.
func (s *Store) Durable() uint64 {
	s.dur.mu.Lock()
	defer s.dur.mu.Unlock()
	return s.dur.durable
}

// kickSync asks the syncer to sync what is written.
func (s *Store) kickSync() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// syncLoop is the syncer: it syncs after each kick until the store closes.
func (s *Store) syncLoop() {
	defer close(s.syncerDone)
	for {
		select {
		case <-s.kick:
			s.syncOnce()
		case <-s.stopSyncer:
			return
		}
	}
}

// syncOnce makes every entry written so far durable: it fdatasyncs the
// newest segment without holding the writers' lock, so appends go on
// meanwhile (a sync covers the writes that returned before it started).
func (s *Store) syncOnce() {
	s.wmu.Lock()
	if s.failed != nil || len(s.segs) == 0 {
		s.wmu.Unlock()
		return
	}
	g := s.segs[len(s.segs)-1]
	target, end, epoch := s.last, g.size, s.epoch
	if g.synced >= end {
		s.dur.advance(target) // under wmu: no deletion comes between
		s.wmu.Unlock()
		return
	}
	s.wmu.Unlock()
	if s.opts.BeforeSync != nil {
		s.opts.BeforeSync()
	}
	err := syncData(g.f)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err != nil && !(s.epoch != epoch && errors.Is(err, os.ErrClosed)) {
		// Any failure but that of a file removed meanwhile: a failed
		// fdatasync may have dropped written pages, which a later sync of
		// the same file would not report.
		s.fail(fmt.Errorf("wal: sync %s: %w (the log refuses writes until the node restarts)", g.path, err))
		return
	}
	if s.epoch != epoch {
		// The newest segment was cut or removed meanwhile: what was
		// captured may be gone. Sync what is there now.
		s.kickSync()
		return
	}
	g.synced = max(g.synced, end)
	s.dur.advance(target)
}

// syncTail syncs the newest segment now, under the writers' lock, and
// advances the durable index to the log's end.
func (s *Store) syncTail() error {
	if len(s.segs) == 0 || s.opts.NoSync {
		s.dur.advance(s.last)
		return nil
	}
	g := s.segs[len(s.segs)-1]
	if g.synced < g.size {
		if err := syncData(g.f); err != nil {
			return s.fail(fmt.Errorf("wal: sync %s: %w (the log refuses writes until the node restarts)", g.path, err))
		}
		g.synced = g.size
	}
	s.dur.advance(s.last)
	return nil
}

// fail makes the store refuse writes, and waiting for durability, for
// good (under the writers' lock), and returns err.
func (s *Store) fail(err error) error {
	s.failed = err
	s.dur.fail(err)
	return err
}
