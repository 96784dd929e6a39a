package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/raftnode"
)

// propose applies cmd through the leader: here when this node leads,
// otherwise forwarded over the internal API. It retries only where nothing
// was appended (the node it reached was not, or no longer, the leader), so
// a write is never applied twice by a retry of its own.
func (s *Server) propose(ctx context.Context, cmd *raftcmdv1.Command) (*raftcmdv1.Result, error) {
	for {
		_, conn, err := s.leader(ctx)
		if err != nil {
			return nil, err
		}
		if conn == nil {
			res, err := s.node.Apply(ctx, cmd)
			if errors.Is(err, raftnode.ErrNotLeader) {
				if err := s.waitLeaderChange(ctx); err != nil {
					return nil, err
				}
				continue
			}
			return res, err
		}
		resp, err := peerClient(conn).Propose(ctx, &peerv1.ProposeRequest{Command: cmd})
		if err != nil {
			// A status from the leader (a domain error) or from the
			// transport (Unavailable: the outcome is unknown) is passed on.
			return nil, err
		}
		if resp.NotLeader {
			if err := s.waitLeaderChange(ctx); err != nil {
				return nil, err
			}
			continue
		}
		return resp.Result, nil
	}
}

// pollInterval is how often waits for a leader or an index look again.
const pollInterval = 20 * time.Millisecond

// waitLeaderChange pauses briefly between attempts while leadership moves.
func (s *Server) waitLeaderChange(ctx context.Context) error {
	t := time.NewTimer(pollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
	case <-t.C:
		return nil
	}
}

// writeHeader is the header of a write's response.
func (s *Server) writeHeader(res *raftcmdv1.Result) *cairnv1.ResponseHeader {
	return &cairnv1.ResponseHeader{Revision: res.GetRevision(), NodeId: s.node.ID()}
}
