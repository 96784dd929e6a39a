package server

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/cairndb/cairn/fsm"
)

// Errors of watch streams.
var (
	// ErrCompacted: the revision asked for is older than the history this
	// node retains.
	ErrCompacted = errors.New("server: revision compacted")
	// ErrWatchTooSlow: a watcher fell so far behind that keeping its place
	// would hold too much history; it may resume at once.
	ErrWatchTooSlow = errors.New("server: watcher too slow")
	// ErrWatchRestart: the node's state was replaced (a snapshot was
	// installed) or the node is stopping; the watcher should resume.
	ErrWatchRestart = errors.New("server: watch must be resumed")
)

// HistoryConfig bounds the change history a node keeps for watchers.
type HistoryConfig struct {
	// MaxRevisions is how many revisions with changes are kept. 0 means
	// 10,000.
	MaxRevisions int
	// MaxBytes bounds the keys and values kept. 0 means 64 MiB.
	MaxBytes int
}

func (c HistoryConfig) withDefaults() HistoryConfig {
	if c.MaxRevisions <= 0 {
		c.MaxRevisions = 10000
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 64 << 20
	}
	return c
}

// WatchHub keeps the recent changes of the applied state, in memory and
// bounded, and wakes the watch streams that follow them. It implements
// fsm.Observer: the FSM tells it of every committed batch. Create it with
// NewWatchHub, hand it to the FSM (fsm.Options.Observer) and to the server
// (Deps.Watch).
type WatchHub struct {
	cfg HistoryConfig

	mu      sync.RWMutex
	sets    []retained // oldest first
	bytes   int        // bytes held by sets
	total   int        // bytes ever appended: sets[i].cum - sets[i].size is what came before it
	oldest  uint64     // history is complete from this revision on
	current uint64     // the applied index
	epoch   uint64     // moves on restore and on close: streams must end
	notify  chan struct{}
	closed  bool
}

type retained struct {
	fsm.ChangeSet
	size int // keys and values of the set
	cum  int // total when the set was appended, itself included
}

// NewWatchHub returns a hub whose history starts after applied, the
// FSM's applied index when it was opened.
func NewWatchHub(cfg HistoryConfig, applied uint64) *WatchHub {
	return &WatchHub{cfg: cfg.withDefaults(), oldest: applied + 1, current: applied, notify: make(chan struct{})}
}

// Committed records a batch's changes (fsm.Observer).
func (h *WatchHub) Committed(applied uint64, changes []fsm.ChangeSet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range changes {
		size := 0
		for _, e := range c.Events {
			size += len(e.Object) + len(e.Key) + len(e.Value) + 64
		}
		h.total += size
		h.bytes += size
		h.sets = append(h.sets, retained{ChangeSet: c, size: size, cum: h.total})
	}
	if applied > h.current {
		h.current = applied
	}
	drop := 0
	for len(h.sets)-drop > h.cfg.MaxRevisions || h.bytes > h.cfg.MaxBytes && drop < len(h.sets) {
		h.bytes -= h.sets[drop].size
		h.oldest = h.sets[drop].Revision + 1
		drop++
	}
	if drop > 0 {
		// Reslice rather than copy what remains (ten thousand entries by
		// default, on every batch); append moves the live entries to a new
		// array when this one fills, so the cost stays constant per entry.
		clear(h.sets[:drop]) // let the collector have the dropped changes
		h.sets = h.sets[drop:]
	}
	h.wakeLocked()
}

// Restored forgets the history: the state jumped to a snapshot
// (fsm.Observer).
func (h *WatchHub) Restored(index uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sets, h.bytes = nil, 0
	h.oldest, h.current = index+1, index
	h.epoch++
	h.wakeLocked()
}

// close ends every stream (the node is stopping).
func (h *WatchHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.epoch++
	h.wakeLocked()
}

func (h *WatchHub) wakeLocked() {
	close(h.notify)
	h.notify = make(chan struct{})
}

// position is what a watcher learns from the hub in one look.
type position struct {
	sets    []fsm.ChangeSet // changes from the asked revision on, oldest first
	current uint64
	epoch   uint64
	wake    <-chan struct{} // closed when anything changes
}

// since returns up to max change sets with revision >= from. It fails with
// ErrCompacted when from is older than the retained history, and, when
// checkSlow is set (the watcher has been streaming, not just started or
// resumed), with ErrWatchTooSlow when the history from `from` on fills
// more than three quarters of the bounds: soon it would be trimmed, so the
// watcher is ended while `from` can still be resumed.
func (h *WatchHub) since(from uint64, max int, checkSlow bool) (position, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	p := position{current: h.current, epoch: h.epoch, wake: h.notify}
	if h.closed {
		return p, fmt.Errorf("%w: the node is stopping; resume from revision %d", ErrWatchRestart, from)
	}
	if from < h.oldest {
		return p, fmt.Errorf("%w: revision %d is older than the oldest retained revision %d; read the state again and watch from its revision",
			ErrCompacted, from, h.oldest)
	}
	i := sort.Search(len(h.sets), func(i int) bool { return h.sets[i].Revision >= from })
	if n := len(h.sets) - i; n > 0 && checkSlow {
		before := h.sets[i].cum - h.sets[i].size
		if n > h.cfg.MaxRevisions*3/4 || h.total-before > h.cfg.MaxBytes*3/4 {
			return p, fmt.Errorf("%w: %d revisions behind; resume from revision %d", ErrWatchTooSlow, n, from)
		}
	}
	for ; i < len(h.sets) && len(p.sets) < max; i++ {
		p.sets = append(p.sets, h.sets[i].ChangeSet)
	}
	return p, nil
}

// Current returns the applied revision the hub knows and the oldest
// revision a watch may start from.
func (h *WatchHub) Current() (current, oldest uint64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.current, h.oldest
}

// retainedBytes returns the bytes of history held (for tests and
// metrics).
func (h *WatchHub) retainedBytes() (revisions, bytes int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sets), h.bytes
}
