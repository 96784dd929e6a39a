package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
)

// The watch workload: watchers follow the key/value object from the
// start of the run, through the client, which resumes broken streams on
// another node. A watcher that is told its next revision is compacted
// (the node it resumed on no longer holds it) starts again from now: that
// ends one segment of its record and starts the next.

// watchEvent is one change a watcher received.
type watchEvent struct {
	rev     uint64
	modRev  uint64 // the event's own mod_revision
	key     string
	deleted bool
	value   string
}

// segment is a stretch of one watcher's stream without restart: it saw
// every change after from up to its last event.
type segment struct {
	from   uint64
	events []watchEvent
	revs   []uint64 // revisions of the responses, in order received
}

// watcher is one watcher's record.
type watcher struct {
	mu       sync.Mutex
	segments []*segment
	revision uint64 // last revision received
	restarts int
	errors   []string // why the stream ended, each time: seconds into the run and error
	start    time.Time
}

// watch follows the object until ctx ends. When the client gives up on a
// stream (the cluster was unavailable for longer than it retries), it
// resumes from the next revision, as an application would; only when
// that revision is compacted on every member does it start again from
// now, in a new segment.
func (w *watcher) watch(ctx context.Context, c *cluster) {
	live := &liveClient{c: c, retryFor: 10 * time.Second}
	defer live.close()
	var next uint64 // 0: from now
	for ctx.Err() == nil {
		wt, err := live.get().Watch(ctx, &cairnv1.WatchRequest{Namespace: kvNamespace, Object: kvObject, StartRevision: next})
		if err != nil {
			w.note(err)
			if errors.Is(err, client.ErrCompacted) {
				next = 0
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		seg := &segment{from: wt.Revision()}
		w.mu.Lock()
		w.segments = append(w.segments, seg)
		w.revision = max(w.revision, seg.from)
		w.mu.Unlock()
		for {
			resp, err := wt.Next(false)
			if err != nil {
				w.note(err)
				if errors.Is(err, client.ErrCompacted) {
					next = 0
				}
				break
			}
			w.mu.Lock()
			seg.revs = append(seg.revs, resp.Revision)
			for _, e := range resp.Events {
				seg.events = append(seg.events, watchEvent{rev: resp.Revision, modRev: e.ModRevision, key: e.Key,
					deleted: e.Type == cairnv1.EventType_EVENT_TYPE_DELETE, value: string(e.GetBinaryValue())})
			}
			w.revision = resp.Revision
			next = resp.Revision + 1
			w.mu.Unlock()
		}
	}
}

// note records why a stream ended for good (the client resumes what it
// can by itself); the watcher then starts a new segment.
func (w *watcher) note(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !errors.Is(err, context.Canceled) && !errors.Is(err, client.ErrCanceled) {
		w.restarts++
		w.errors = append(w.errors, fmt.Sprintf("%.1fs: %v", time.Since(w.start).Seconds(), err))
	}
}

func (w *watcher) rev() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.revision
}

// write is a committed change of a key, as the key/value history knows it.
type write struct {
	key     string
	deleted bool
	value   string
}

// committedWrites returns the changes of answered writes by revision, and
// the values of every write (answered or not) by key and value, to tell
// what an event may show.
func committedWrites(ops []kvOp) (byRev map[uint64]write, issued map[write]bool) {
	byRev, issued = map[uint64]write{}, map[write]bool{}
	for _, op := range ops {
		var w write
		switch {
		case op.in.op == opPut, op.in.op == opCAS && (op.out.succeeded || op.out.unknown):
			w = write{key: op.in.key, value: op.in.value}
		case op.in.op == opDelete && (op.out.deleted || op.out.unknown):
			w = write{key: op.in.key, deleted: true}
		default:
			continue
		}
		issued[w] = true
		if !op.out.unknown {
			byRev[op.out.rev] = w
		}
	}
	return byRev, issued
}

// check checks one watcher against the history: revisions strictly
// increase across all its segments (no duplicate, no step back); within a
// segment, every answered write after its start and up to its last
// revision was delivered, at its revision, with its value; and every
// event is a write that was issued.
func (w *watcher) check(byRev map[uint64]write, issued map[write]bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var problems []string
	var last uint64
	for _, seg := range w.segments {
		for _, r := range seg.revs {
			if r <= last {
				problems = append(problems, fmt.Sprintf("revision %d after %d", r, last))
			}
			last = r
		}
		seen := map[uint64]write{}
		var end uint64
		for _, e := range seg.events {
			got := write{key: e.key, deleted: e.deleted, value: e.value}
			if e.deleted {
				got.value = ""
			}
			if !e.deleted && e.modRev != e.rev {
				problems = append(problems, fmt.Sprintf("revision %d: event %+v says mod_revision %d", e.rev, got, e.modRev))
			}
			seen[e.rev] = got
			end = max(end, e.rev)
			if want, ok := byRev[e.rev]; ok && want != got {
				problems = append(problems, fmt.Sprintf("revision %d: event %+v, but the write answered at it was %+v", e.rev, got, want))
			}
			if !issued[got] {
				problems = append(problems, fmt.Sprintf("revision %d: event %+v of no write issued", e.rev, got))
			}
		}
		for rev, want := range byRev {
			if rev > seg.from && rev <= end {
				if _, ok := seen[rev]; !ok {
					problems = append(problems, fmt.Sprintf("gap: the write %+v answered at revision %d is missing from the stream after %d", want, rev, seg.from))
				}
			}
		}
	}
	return problems
}
