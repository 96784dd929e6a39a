package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pollInterval is how often waits for a leader or an index look again.
const pollInterval = 20 * time.Millisecond

// propose applies cmd through the leader: here when this node leads,
// otherwise forwarded over the peer API. It retries while leadership
// moves, within LeaderWait, but only where a retry cannot apply the write
// twice: when nothing was appended (the node reached was not the leader,
// or could not be reached at all), or, for any failure whose outcome is
// unknown, when the command carries a request id, which the FSM answers
// from memory if the first attempt did apply.
func (s *Server) propose(ctx context.Context, cmd *raftcmdv1.Command) (*raftcmdv1.Result, error) {
	if len(cmd.RequestId) > fsm.MaxRequestIDBytes {
		return nil, invalidf("request_id is %d bytes, limit is %d", len(cmd.RequestId), fsm.MaxRequestIDBytes)
	}
	if cmd.RequestId != "" && cmd.RequestRetentionMs == 0 {
		// The server's own commands (alarm deliveries) may ask for a
		// shorter window; a client's never sets one.
		cmd.RequestRetentionMs = s.cfg.RequestRetention.Milliseconds()
	}
	retryUntil := time.Now().Add(s.cfg.LeaderWait)
	for {
		res, err := s.proposeOnce(ctx, cmd)
		if err == nil || !retryable(err, cmd.RequestId != "") || time.Now().After(retryUntil) {
			return res, err
		}
		if err := s.pause(ctx); err != nil {
			return nil, err
		}
	}
}

// errNotLeaderAnymore marks an attempt that reached a node that was not
// the leader: nothing was appended.
var errNotLeaderAnymore = fmt.Errorf("%w: the node reached was not the leader", raftnode.ErrNotLeader)

func (s *Server) proposeOnce(ctx context.Context, cmd *raftcmdv1.Command) (*raftcmdv1.Result, error) {
	_, conn, err := s.leader(ctx)
	if err != nil {
		return nil, err
	}
	if conn == nil {
		return s.applyHere(ctx, cmd)
	}
	s.metrics.forwarded.WithLabelValues("propose").Inc()
	resp, err := peerClient(conn).Propose(ctx, &peerv1.ProposeRequest{Command: cmd})
	if err != nil {
		// A status from the leader (a domain error) or from the transport
		// (Unavailable) is passed on as it is.
		return nil, err
	}
	if resp.NotLeader {
		return nil, errNotLeaderAnymore
	}
	return resp.Result, nil
}

// applyHere hands cmd to Raft on this node, the leader (a follower's
// forwarded writes come here too), unless a member does not apply its
// command type (command_types.go) or a member's disk is low (checkDisk,
// disk.go), and within the bound on proposals in flight (overload.go).
func (s *Server) applyHere(ctx context.Context, cmd *raftcmdv1.Command) (*raftcmdv1.Result, error) {
	if err := s.checkMembersApply(ctx, cmd); err != nil {
		return nil, err
	}
	if s.node.IsLeader() {
		if err := s.checkDisk(cmd); err != nil {
			return nil, err
		}
	}
	if err := s.proposals.enter(s.node.ID()); err != nil {
		s.metrics.overloaded.WithLabelValues("proposals").Inc()
		return nil, err
	}
	defer s.proposals.leave()
	start := time.Now()
	res, err := s.node.Apply(ctx, cmd)
	if !errors.Is(err, raftnode.ErrNotLeader) {
		s.metrics.proposals.Observe(time.Since(start).Seconds())
	}
	return res, err
}

// retryable reports whether a failed attempt may be repeated: always when
// nothing can have been appended; when the outcome is unknown, only with a
// request id.
func retryable(err error, hasRequestID bool) bool {
	switch {
	case errors.Is(err, raftnode.ErrNotLeader), notSent(err):
		return true
	case errors.Is(err, raftnode.ErrLeadershipLost), errors.Is(err, raftnode.ErrTimeout):
		return hasRequestID
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return hasRequestID
	}
	return false
}

// notSent reports whether a forwarded call failed because no connection
// to the leader could be made, so the leader never saw it.
func notSent(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	msg := st.Message()
	return strings.Contains(msg, "Error while dialing") || strings.Contains(msg, "connection refused")
}

// pause waits briefly between attempts while leadership moves.
func (s *Server) pause(ctx context.Context) error {
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
	return &cairnv1.ResponseHeader{Revision: res.GetRevision(), NodeId: s.node.ID(), Replayed: res.GetReplayed()}
}
