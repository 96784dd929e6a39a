package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/raftnode"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Read consistency levels.
const (
	Linearizable = "linearizable"
	Serializable = "serializable"
)

// readBarrier prepares a read at the requested consistency and returns
// the header to answer with. A linearizable read asks the leader for a
// read index (confirmed with a quorum) and waits until this node has
// applied it, so any node serves it correctly; a serializable read answers
// at once from this node's applied state and says how stale it may be.
//
// maxStalenessMs (serializable reads only; 0: no bound) refuses to answer
// from a follower that has not heard from the leader for longer, or knows
// no leader.
func (s *Server) readBarrier(ctx context.Context, consistency string, maxStalenessMs uint64) (*cairnv1.ResponseHeader, error) {
	switch consistency {
	case "", Linearizable:
		consistency = Linearizable
	case Serializable:
		h := &cairnv1.ResponseHeader{Revision: s.node.AppliedIndex(), NodeId: s.node.ID(), Consistency: Serializable}
		st := s.node.Status()
		if !st.LastContact.IsZero() {
			h.LastLeaderContactMs = time.Since(st.LastContact).Milliseconds()
		}
		if maxStalenessMs > 0 && !s.node.IsLeader() {
			if st.LeaderID == "" || st.LastContact.IsZero() {
				return nil, fmt.Errorf("%w: this node knows no leader, so it cannot bound its staleness (max_staleness_ms %d)", ErrTooStale, maxStalenessMs)
			}
			if uint64(h.LastLeaderContactMs) > maxStalenessMs {
				return nil, fmt.Errorf("%w: this node last heard from the leader %d ms ago, more than max_staleness_ms %d", ErrTooStale, h.LastLeaderContactMs, maxStalenessMs)
			}
		}
		return h, nil
	default:
		return nil, invalidf("consistency is %q; use %q or %q", consistency, Linearizable, Serializable)
	}
	index, err := s.readIndex(ctx)
	if err != nil {
		return nil, err
	}
	if serr := s.node.StorageError(); serr != nil && s.node.AppliedIndex() < index {
		// Waiting would last until the disk is freed: say so at once.
		return nil, status.Errorf(codes.Unavailable, "node %s cannot apply the entries this read must see (applied %d, read index %d): %s; it retries until space is freed, and serializable reads answer from its state meanwhile",
			s.node.ID(), s.node.AppliedIndex(), index, userMessage(serr))
	}
	if err := s.node.WaitApplied(ctx, index); err != nil {
		return nil, err
	}
	return &cairnv1.ResponseHeader{Revision: s.node.AppliedIndex(), NodeId: s.node.ID(), Consistency: Linearizable}, nil
}

// readIndex gets a read index from the leader, retrying within
// LeaderWait while leadership moves or the leader cannot be reached (a
// read is always safe to retry).
func (s *Server) readIndex(ctx context.Context) (uint64, error) {
	retryUntil := time.Now().Add(s.cfg.LeaderWait)
	for {
		index, err := s.readIndexOnce(ctx)
		if err == nil || !(isNotLeader(err) || status.Code(err) == codes.Unavailable) || time.Now().After(retryUntil) {
			return index, err
		}
		if err := s.pause(ctx); err != nil {
			return 0, err
		}
	}
}

func (s *Server) readIndexOnce(ctx context.Context) (uint64, error) {
	_, conn, err := s.leader(ctx)
	if err != nil {
		return 0, err
	}
	if conn == nil {
		return s.node.ReadIndex(ctx)
	}
	s.metrics.forwarded.WithLabelValues("read_index").Inc()
	resp, err := peerClient(conn).ReadIndex(ctx, &peerv1.ReadIndexRequest{})
	if err != nil {
		return 0, err
	}
	if resp.NotLeader {
		return 0, errNotLeaderAnymore
	}
	return resp.Index, nil
}

func isNotLeader(err error) bool {
	return errors.Is(err, raftnode.ErrNotLeader) || errors.Is(err, raftnode.ErrLeadershipLost)
}
