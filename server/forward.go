package server

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// peers keeps one gRPC connection per member's peer API, by Raft
// address, for forwarding to the leader.
type peers struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// conn returns the connection to the peer API at Raft address addr,
// creating it with dial (Node.DialPeer: the Raft port's mutual TLS).
// Calls on it carry the caller's token (forwardCaller).
func (p *peers) conn(addr string, dial func(context.Context, string) (net.Conn, error)) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	// TLS, when the cluster has it, is dial's: the connection gRPC gets is
	// already authenticated both ways.
	c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
		grpc.WithChainUnaryInterceptor(forwardCaller),
		grpc.WithChainStreamInterceptor(forwardCallerStream),
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
// and, when it is another node, a connection to its peer API (on its Raft
// port, whose address Raft knows).
func (s *Server) leader(ctx context.Context) (string, *grpc.ClientConn, error) {
	var deadline time.Time
	var tick *time.Ticker // made only when there is no leader to use yet
	for {
		id, addr := s.node.Leader()
		if id == s.node.ID() && s.node.IsLeader() {
			return id, nil, nil
		}
		if id != "" && id != s.node.ID() && addr != "" {
			c, err := s.peers.conn(addr, s.node.DialPeer)
			if err != nil {
				return "", nil, fmt.Errorf("%w: %s at %s: %w", ErrLeaderUnreachable, id, addr, err)
			}
			return id, c, nil
		}
		if tick == nil {
			deadline = time.Now().Add(s.cfg.LeaderWait)
			tick = time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
		} else if time.Now().After(deadline) {
			return "", nil, fmt.Errorf("%w: none elected within %s", ErrNoLeader, s.cfg.LeaderWait)
		}
		select {
		case <-ctx.Done():
			return "", nil, fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
		case <-tick.C:
		}
	}
}

func peerClient(c *grpc.ClientConn) peerv1.PeerServiceClient {
	return peerv1.NewPeerServiceClient(c)
}
