package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
)

type watchService struct {
	cairnv1.UnimplementedWatchServiceServer
	s *Server
}

func (w *watchService) Watch(req *cairnv1.WatchRequest, stream cairnv1.WatchService_WatchServer) error {
	return w.s.watch(stream.Context(), req, stream.Send)
}

// defaultProgressInterval is how often an idle watch reports progress.
const defaultProgressInterval = 10 * time.Second

// watch validates req and streams its changes to send until ctx ends or
// the stream must end (compacted history, too slow, restore, shutdown).
// gRPC and Server-Sent Events share it.
func (s *Server) watch(ctx context.Context, req *cairnv1.WatchRequest, send func(*cairnv1.WatchResponse) error) error {
	if err := checkNamespace(req.Namespace); err != nil {
		return err
	}
	if req.Object != "" {
		if err := fsm.ValidateObjectName(req.Object); err != nil {
			return err
		}
		if req.ObjectPrefix != "" {
			return invalidf("object_prefix applies to namespace watches; this one names object %q", req.Object)
		}
	}
	if err := checkBound("prefix", req.Prefix); err != nil {
		return err
	}
	if len(req.ObjectPrefix) > fsm.MaxObjectNameBytes {
		return invalidf("object_prefix is %d bytes, limit is %d", len(req.ObjectPrefix), fsm.MaxObjectNameBytes)
	}
	interval := defaultProgressInterval
	if req.ProgressIntervalMs != 0 {
		if req.ProgressIntervalMs < 100 {
			return invalidf("progress_interval_ms is %d, minimum is 100", req.ProgressIntervalMs)
		}
		interval = time.Duration(req.ProgressIntervalMs) * time.Millisecond
	}
	// The namespace check is linearizable: a watch opened after the
	// namespace was created must find it, whichever node serves it.
	if _, err := s.readBarrier(ctx, Linearizable, 0); err != nil {
		return err
	}
	if _, err := s.state.Namespace(req.Namespace); err != nil {
		return err
	}
	hub := s.hub
	current, _ := hub.Current()
	next := req.StartRevision
	if next == 0 {
		next = current + 1
	}
	pos, err := hub.since(next, 0, false)
	if err != nil {
		return err
	}
	epoch := pos.epoch
	// The created message's revision is the stream's position (everything
	// before next is delivered), so that resuming from it never skips.
	if err := send(&cairnv1.WatchResponse{Revision: next - 1, Created: true, NodeId: s.node.ID()}); err != nil {
		return err
	}
	s.metrics.watches.Inc()
	defer s.metrics.watches.Dec()
	progress := time.NewTicker(interval)
	defer progress.Stop()
	streaming := false
	for {
		pos, err := hub.since(next, 64, streaming)
		// A restore first: it also makes next look compacted here, but
		// other members still hold the history, so the watcher resumes.
		if pos.epoch != epoch && !errors.Is(err, ErrWatchRestart) {
			err = fmt.Errorf("%w: this node's state was replaced by a snapshot at revision %d; resume from revision %d", ErrWatchRestart, pos.current, next)
		}
		if err != nil {
			return err
		}
		sent := false
		for _, cs := range pos.sets {
			if resp := s.filterChanges(req, cs); resp != nil {
				if err := send(resp); err != nil {
					return err
				}
				sent = true
			}
			next = cs.Revision + 1
		}
		streaming = true
		if len(pos.sets) == 64 {
			continue // more is waiting
		}
		if pos.current+1 > next {
			next = pos.current + 1 // revisions without changes of interest
		}
		if sent {
			progress.Reset(interval)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-pos.wake:
		case <-progress.C:
			if err := send(&cairnv1.WatchResponse{Revision: next - 1, Progress: true, NodeId: s.node.ID()}); err != nil {
				return err
			}
		}
	}
}

// filterChanges returns the events of cs that req watches, as one
// response, or nil when there are none.
func (s *Server) filterChanges(req *cairnv1.WatchRequest, cs fsm.ChangeSet) *cairnv1.WatchResponse {
	if cs.Namespace != req.Namespace {
		return nil
	}
	var out *cairnv1.WatchResponse
	for _, e := range cs.Events {
		if req.Object != "" && e.Object != req.Object || req.Object == "" && !strings.HasPrefix(e.Object, req.ObjectPrefix) {
			continue
		}
		if e.Type != fsm.EventDeleteObject && !strings.HasPrefix(e.Key, req.Prefix) {
			continue
		}
		ev := &cairnv1.Event{Object: e.Object, Key: e.Key, CreateRevision: e.CreateRevision, ModRevision: e.ModRevision}
		switch e.Type {
		case fsm.EventPut:
			ev.Type = cairnv1.EventType_EVENT_TYPE_PUT
			if !req.NoValues {
				setEventValue(ev, fsm.KeyValue{Key: e.Key, Value: e.Value, Encoding: e.Encoding})
			}
		case fsm.EventDelete:
			ev.Type = cairnv1.EventType_EVENT_TYPE_DELETE
		case fsm.EventDeleteObject:
			ev.Type = cairnv1.EventType_EVENT_TYPE_DELETE_OBJECT
		}
		if out == nil {
			out = &cairnv1.WatchResponse{Revision: cs.Revision, NodeId: s.node.ID()}
		}
		out.Events = append(out.Events, ev)
	}
	return out
}

func setEventValue(ev *cairnv1.Event, kv fsm.KeyValue) {
	v, bin, err := decodeValue(kv)
	switch {
	case err != nil:
		ev.Content = &cairnv1.Event_BinaryValue{BinaryValue: kv.Value}
	case v != nil:
		ev.Content = &cairnv1.Event_Value{Value: v}
	default:
		ev.Content = &cairnv1.Event_BinaryValue{BinaryValue: bin}
	}
}
