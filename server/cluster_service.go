package server

import (
	"context"
	"errors"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type clusterService struct {
	cairnv1.UnimplementedClusterServiceServer
	s *Server
}

func (c *clusterService) GetCluster(_ context.Context, _ *cairnv1.GetClusterRequest) (*cairnv1.GetClusterResponse, error) {
	st := c.s.node.Status()
	members, err := c.s.members()
	if err != nil {
		return nil, err
	}
	resp := &cairnv1.GetClusterResponse{
		Header:       &cairnv1.ResponseHeader{Revision: st.AppliedIndex, NodeId: c.s.node.ID()},
		LeaderId:     st.LeaderID,
		Term:         st.Term,
		CommitIndex:  st.CommitIndex,
		AppliedIndex: st.AppliedIndex,
		State:        st.State,
		Members:      members,
		Ready:        c.s.node.CaughtUp(),
	}
	if !st.LastContact.IsZero() {
		resp.LastContactMs = time.Since(st.LastContact).Milliseconds()
	}
	return resp, nil
}

// members joins the Raft configuration with the replicated API addresses.
func (s *Server) members() ([]*cairnv1.Member, error) {
	servers, err := s.node.Servers()
	if err != nil {
		return nil, err
	}
	recorded, err := s.state.Members()
	if err != nil {
		return nil, err
	}
	leaderID, _ := s.node.Leader()
	out := make([]*cairnv1.Member, 0, len(servers))
	for _, srv := range servers {
		m := &cairnv1.Member{Id: srv.ID, RaftAddr: srv.Address, Voter: srv.Voter, Leader: srv.ID == leaderID}
		for _, r := range recorded {
			if r.Id == srv.ID {
				m.GrpcAddr, m.HttpAddr = r.GrpcAddr, r.HttpAddr
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func (c *clusterService) AddMember(ctx context.Context, req *cairnv1.AddMemberRequest) (*cairnv1.AddMemberResponse, error) {
	if req.Id == "" || req.RaftAddr == "" {
		return nil, invalidf("id and raft_addr are required")
	}
	_, conn, err := c.s.leader(ctx)
	if err != nil {
		return nil, err
	}
	if conn != nil {
		return cairnv1.NewClusterServiceClient(conn).AddMember(ctx, req)
	}
	if err := c.s.node.VerifyPeer(ctx, req.RaftAddr); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "member %s at %s does not pass the cluster's mutual TLS: %s", req.Id, req.RaftAddr, userMessage(err))
	}
	if err := c.s.node.AddServer(ctx, req.Id, req.RaftAddr, !req.Nonvoter); err != nil {
		return nil, err
	}
	if req.GrpcAddr != "" || req.HttpAddr != "" {
		_, err := c.s.propose(ctx, &raftcmdv1.Command{Op: &raftcmdv1.Command_SetMember{SetMember: &raftcmdv1.SetMember{
			Member: &raftcmdv1.Member{Id: req.Id, RaftAddr: req.RaftAddr, GrpcAddr: req.GrpcAddr, HttpAddr: req.HttpAddr},
		}}})
		if err != nil {
			return nil, err
		}
	}
	members, err := c.s.members()
	if err != nil {
		return nil, err
	}
	return &cairnv1.AddMemberResponse{Header: &cairnv1.ResponseHeader{Revision: c.s.node.AppliedIndex(), NodeId: c.s.node.ID()}, Members: members}, nil
}

func (c *clusterService) RemoveMember(ctx context.Context, req *cairnv1.RemoveMemberRequest) (*cairnv1.RemoveMemberResponse, error) {
	if req.Id == "" {
		return nil, invalidf("id is required")
	}
	_, conn, err := c.s.leader(ctx)
	if err != nil {
		return nil, err
	}
	if conn != nil {
		return cairnv1.NewClusterServiceClient(conn).RemoveMember(ctx, req)
	}
	if req.Id == c.s.node.ID() {
		// Removing the leader: hand leadership over first, so the cluster
		// never waits out an election, then let the new leader remove it.
		if _, err := c.s.handOverLeadership(ctx, ""); err != nil {
			return nil, err
		}
		return c.RemoveMember(ctx, req)
	}
	if err := c.s.node.RemoveServer(ctx, req.Id); err != nil {
		return nil, err
	}
	_, err = c.s.propose(ctx, &raftcmdv1.Command{Op: &raftcmdv1.Command_RemoveMember{RemoveMember: &raftcmdv1.RemoveMember{Id: req.Id}}})
	if err != nil && !errors.Is(err, fsm.ErrMemberNotFound) {
		return nil, err
	}
	return &cairnv1.RemoveMemberResponse{Header: &cairnv1.ResponseHeader{Revision: c.s.node.AppliedIndex(), NodeId: c.s.node.ID()}}, nil
}

func (c *clusterService) TransferLeadership(ctx context.Context, req *cairnv1.TransferLeadershipRequest) (*cairnv1.TransferLeadershipResponse, error) {
	_, conn, err := c.s.leader(ctx)
	if err != nil {
		return nil, err
	}
	if conn != nil {
		return cairnv1.NewClusterServiceClient(conn).TransferLeadership(ctx, req)
	}
	id, err := c.s.handOverLeadership(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	return &cairnv1.TransferLeadershipResponse{Header: &cairnv1.ResponseHeader{NodeId: c.s.node.ID()}, LeaderId: id}, nil
}

// handOverLeadership transfers leadership to voter to (any suitable voter
// when empty) and returns the new leader once this node has learnt of it.
func (s *Server) handOverLeadership(ctx context.Context, to string) (string, error) {
	if err := s.node.TransferLeadership(to); err != nil {
		return "", err
	}
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if id, _ := s.node.Leader(); id != "" && id != s.node.ID() {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

// GetStateHash hashes this node's state (not forwarded: the point is to
// compare members).
func (c *clusterService) GetStateHash(_ context.Context, _ *cairnv1.GetStateHashRequest) (*cairnv1.GetStateHashResponse, error) {
	hash, index, err := c.s.state.HashAt()
	if err != nil {
		return nil, err
	}
	return &cairnv1.GetStateHashResponse{Header: &cairnv1.ResponseHeader{Revision: index, NodeId: c.s.node.ID()}, Hash: hash, AppliedIndex: index}, nil
}

// Snapshot snapshots this node (not forwarded: each node compacts its own
// log).
func (c *clusterService) Snapshot(_ context.Context, _ *cairnv1.SnapshotRequest) (*cairnv1.SnapshotResponse, error) {
	index, err := c.s.node.TakeSnapshot()
	if err != nil {
		return nil, err
	}
	return &cairnv1.SnapshotResponse{Header: &cairnv1.ResponseHeader{Revision: c.s.node.AppliedIndex(), NodeId: c.s.node.ID()}, Index: index}, nil
}
