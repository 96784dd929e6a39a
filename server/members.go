package server

import (
	"context"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/proto"
)

// publishSelf keeps this node's API addresses in the replicated member
// records, so that every node can forward to it when it leads. It checks
// quickly until the record is there, then now and then (a restore may
// replace the records), until ctx ends.
func (s *Server) publishSelf(ctx context.Context) {
	want := &raftcmdv1.Member{Id: s.node.ID(), RaftAddr: s.node.RaftAddr(), GrpcAddr: s.grpcAdvertise, HttpAddr: s.httpAdvertise}
	delay := 100 * time.Millisecond
	for {
		if !s.published(want) {
			if id, _ := s.node.Leader(); id != "" {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := s.propose(pctx, &raftcmdv1.Command{Op: &raftcmdv1.Command_SetMember{SetMember: &raftcmdv1.SetMember{Member: want}}})
				cancel()
				if err != nil && ctx.Err() == nil {
					s.log.Debug("publishing member addresses", "err", err)
				}
			}
			delay = 100 * time.Millisecond
		} else {
			delay = 5 * time.Second
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *Server) published(want *raftcmdv1.Member) bool {
	members, err := s.state.Members()
	if err != nil {
		return false
	}
	for _, m := range members {
		if m.Id == want.Id {
			return proto.Equal(m, want)
		}
	}
	return false
}
