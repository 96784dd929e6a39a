package client

import (
	"context"
	"errors"
	"io"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
)

// Backup streams an online, consistent backup of the cluster's state to
// w and returns the bytes written. Writes go on while it streams; the
// backup holds every write acknowledged before Backup was called. The
// bytes are a backup file (header, snapshot, SHA-256 trailer) that
// Restore and `cairn backup restore` accept. Backup moves to another
// endpoint only while nothing has been written to w. It needs the admin
// role.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	var n int64
	for attempt := 1; ; attempt++ {
		i, conn := c.endpoint()
		err := c.backupFrom(ctx, conn, w, &n)
		if err == nil {
			return n, nil
		}
		if n > 0 || !retryable(err) || ctx.Err() != nil || !c.tryNext(i, attempt) {
			return n, wrap(err)
		}
	}
}

func (c *Client) backupFrom(ctx context.Context, conn *grpc.ClientConn, w io.Writer, n *int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cairnv1.NewClusterServiceClient(conn).Backup(ctx, &cairnv1.BackupRequest{})
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		k, err := w.Write(msg.Data)
		*n += int64(k)
		if err != nil {
			return &writeError{err}
		}
	}
}

// writeError is the caller's writer failing, not the cluster.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// Restore replaces the whole state of the running cluster with the backup
// file read from r, and returns what the cluster answered: the backup's
// index and term and the revision the restored state took (writes after
// it get higher revisions). The cluster verifies the whole file before it
// replaces anything: a corrupted or truncated file is refused with
// ErrInvalidArgument and the state is left as it was. Any node accepts
// the upload (a follower forwards it to the leader). Restore moves to
// another endpoint only while nothing has been read from r. It needs the
// admin role.
func (c *Client) Restore(ctx context.Context, r io.Reader) (*cairnv1.RestoreResponse, error) {
	cr := &countingReader{r: r}
	for attempt := 1; ; attempt++ {
		i, conn := c.endpoint()
		resp, err := restoreTo(ctx, conn, cr)
		if err == nil {
			return resp, nil
		}
		if cr.n > 0 || !retryable(err) || ctx.Err() != nil || !c.tryNext(i, attempt) {
			return nil, wrap(err)
		}
	}
}

func restoreTo(ctx context.Context, conn *grpc.ClientConn, r io.Reader) (*cairnv1.RestoreResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up, err := cairnv1.NewClusterServiceClient(conn).Restore(ctx)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			if err := up.Send(&cairnv1.RestoreRequest{Chunk: buf[:k]}); err != nil {
				if errors.Is(err, io.EOF) {
					break // the server ended the call: CloseAndRecv says why
				}
				return nil, err
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, &writeError{rerr}
		}
	}
	return up.CloseAndRecv()
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// tryNext moves off endpoint i when, after attempts tries, there is an
// endpoint not yet tried.
func (c *Client) tryNext(i, attempts int) bool {
	c.mu.Lock()
	more := attempts < len(c.conns)
	c.mu.Unlock()
	if more {
		c.failed(i)
	}
	return more
}
