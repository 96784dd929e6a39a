package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// peers keeps one gRPC connection per peer API address, for forwarding to
// the leader.
type peers struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (p *peers) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	if p.conns == nil {
		p.conns = make(map[string]*grpc.ClientConn)
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// leader waits (up to LeaderWait) for a known leader and returns its id,
// and, when it is another node, a connection to its API.
func (s *Server) leader(ctx context.Context) (string, *grpc.ClientConn, error) {
	deadline := time.Now().Add(s.cfg.LeaderWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		id, _ := s.node.Leader()
		if id == s.node.ID() && s.node.IsLeader() {
			return id, nil, nil
		}
		if id != "" {
			if addr := s.memberGRPCAddr(id); addr != "" {
				c, err := s.peers.conn(addr)
				if err != nil {
					return "", nil, fmt.Errorf("%w: %s at %s: %w", ErrLeaderUnreachable, id, addr, err)
				}
				return id, c, nil
			}
		}
		if time.Now().After(deadline) {
			if id != "" {
				return "", nil, fmt.Errorf("%w: leader %s has not published its API address", ErrNoLeader, id)
			}
			return "", nil, fmt.Errorf("%w: none elected within %s", ErrNoLeader, s.cfg.LeaderWait)
		}
		select {
		case <-ctx.Done():
			return "", nil, fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
		case <-tick.C:
		}
	}
}

// memberGRPCAddr returns member id's gRPC address from the replicated
// member records, or "" when it is not (yet) known.
func (s *Server) memberGRPCAddr(id string) string {
	members, err := s.state.Members()
	if err != nil {
		return ""
	}
	for _, m := range members {
		if m.Id == id {
			return m.GrpcAddr
		}
	}
	return ""
}

func peerClient(c *grpc.ClientConn) peerv1.PeerServiceClient {
	return peerv1.NewPeerServiceClient(c)
}
