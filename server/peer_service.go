package server

import (
	"context"
	"errors"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
)

// peerService answers the calls followers make of the leader.
type peerService struct {
	peerv1.UnimplementedPeerServiceServer
	s *Server
}

func (i *peerService) Propose(ctx context.Context, req *peerv1.ProposeRequest) (*peerv1.ProposeResponse, error) {
	// A follower of a newer release may forward a command this leader
	// cannot apply: proposing it would stop every node of this release.
	if err := fsm.CheckCommand(req.GetCommand()); err != nil {
		return nil, err
	}
	res, err := i.s.applyHere(ctx, req.Command)
	if errors.Is(err, raftnode.ErrNotLeader) {
		return &peerv1.ProposeResponse{NotLeader: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return &peerv1.ProposeResponse{Result: res}, nil
}

func (i *peerService) ReadIndex(ctx context.Context, _ *peerv1.ReadIndexRequest) (*peerv1.ReadIndexResponse, error) {
	index, err := i.s.node.ReadIndex(ctx)
	if isNotLeader(err) {
		return &peerv1.ReadIndexResponse{NotLeader: true}, nil
	}
	if err != nil {
		return nil, err
	}
	return &peerv1.ReadIndexResponse{Index: index}, nil
}

// CommandTypes answers which command types this node applies, so that a
// leader proposes none that this node would stop on.
func (i *peerService) CommandTypes(context.Context, *peerv1.CommandTypesRequest) (*peerv1.CommandTypesResponse, error) {
	return &peerv1.CommandTypesResponse{CommandVersion: fsm.CommandVersion, Types: fsm.CommandTypes()}, nil
}

func (i *peerService) DiskStatus(context.Context, *peerv1.DiskStatusRequest) (*peerv1.DiskStatusResponse, error) {
	return i.s.diskStatus(), nil
}
