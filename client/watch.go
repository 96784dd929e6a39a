package client

import (
	"context"
	"errors"
	"io"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Watcher follows a watch stream, resuming it on another node (from the
// revision after the last one it delivered) when a node stops or the
// connection breaks, so its caller sees every revision once, in order.
type Watcher struct {
	c      *Client
	ctx    context.Context
	req    *cairnv1.WatchRequest
	stream cairnv1.WatchService_WatchClient
	// next is the first revision not yet delivered (0: not yet known).
	next uint64
}

// Watch opens a watch. req.StartRevision 0 means changes after now.
func (c *Client) Watch(ctx context.Context, req *cairnv1.WatchRequest) (*Watcher, error) {
	w := &Watcher{c: c, ctx: ctx, req: proto.Clone(req).(*cairnv1.WatchRequest), next: req.StartRevision}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// open starts the stream at w.next on the current endpoint, moving to the
// next one while the cluster is unavailable, and also while endpoints
// answer that w.next is compacted: one node's history may start later than
// another's (it restarted, or installed a snapshot), so ErrCompacted comes
// back only when every endpoint has said so.
func (w *Watcher) open() error {
	deadline := time.Now().Add(w.c.cfg.RetryFor)
	compacted := map[int]bool{}
	for {
		i, conn := w.c.endpoint()
		req := proto.Clone(w.req).(*cairnv1.WatchRequest)
		req.StartRevision = w.next
		stream, err := cairnv1.NewWatchServiceClient(conn).Watch(w.ctx, req)
		if err == nil {
			var first *cairnv1.WatchResponse
			if first, err = stream.Recv(); err == nil {
				w.stream = stream
				if w.next == 0 {
					w.next = first.Revision + 1
				}
				return nil
			}
		}
		if status.Code(err) == codes.OutOfRange {
			compacted[i] = true
			if len(compacted) == len(w.c.conns) || w.ctx.Err() != nil {
				return wrap(err)
			}
			w.c.failed(i)
			continue
		}
		if !retryable(err) || time.Now().After(deadline) || w.ctx.Err() != nil {
			return wrap(err)
		}
		w.c.failed(i)
		select {
		case <-w.ctx.Done():
			return wrap(w.ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Next returns the next change message (all events of one revision), or
// a progress message when includeProgress is set. It resumes broken
// streams by itself; it fails with ErrCompacted when no endpoint still
// holds the next revision (read the state again and watch
// from its revision), and with the context's error when it ends.
func (w *Watcher) Next(includeProgress bool) (*cairnv1.WatchResponse, error) {
	for {
		resp, err := w.stream.Recv()
		if err == nil {
			if resp.Progress || resp.Created {
				if resp.Revision+1 > w.next {
					w.next = resp.Revision + 1
				}
				if includeProgress && resp.Progress {
					return resp, nil
				}
				continue
			}
			w.next = resp.Revision + 1
			return resp, nil
		}
		if w.ctx.Err() != nil {
			return nil, wrap(w.ctx.Err())
		}
		code := status.Code(err)
		if !errors.Is(err, io.EOF) && code != codes.Unavailable && code != codes.ResourceExhausted {
			return nil, wrap(err)
		}
		// The node stopped, restored a snapshot or found us too slow:
		// resume where we are.
		if err := w.open(); err != nil {
			return nil, err
		}
	}
}

// Revision returns the last revision delivered.
func (w *Watcher) Revision() uint64 {
	if w.next == 0 {
		return 0
	}
	return w.next - 1
}
