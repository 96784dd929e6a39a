// Package server serves cairn's public gRPC API and its REST gateway on
// one node, and the internal API the nodes use among themselves: it
// validates requests, forwards writes to the leader, serves reads at the
// asked consistency, and reports health and metrics. It reads the state
// only through the FSM's query API and reaches Raft only through Node.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
)

// Server is one node's API front. Create it with New, then Start; Stop
// ends it.
type Server struct {
	cfg   Config
	node  Node
	state State
	log   *slog.Logger
	peers peers

	grpcLis, httpLis             net.Listener
	grpcAdvertise, httpAdvertise string
	grpc                         *grpc.Server
	http                         *http.Server
	metrics                      *metrics

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a server for cfg. It listens on nothing until Start.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Node == nil || deps.State == nil {
		return nil, errors.New("server: Deps.Node and Deps.State are required")
	}
	cfg = cfg.withDefaults()
	return &Server{cfg: cfg, node: deps.Node, state: deps.State, log: cfg.Logger}, nil
}

// Start binds the gRPC and HTTP listeners and serves until Stop.
func (s *Server) Start() error {
	var err error
	if s.grpcLis, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("server: gRPC listen: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
		_ = s.grpcLis.Close()
		return fmt.Errorf("server: HTTP listen: %w", err)
	}
	s.grpcAdvertise = advertised(s.cfg.AdvertiseGRPCAddr, s.grpcLis.Addr())
	s.httpAdvertise = advertised(s.cfg.AdvertiseHTTPAddr, s.httpLis.Addr())
	s.metrics = newMetrics(s.node)

	s.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.unaryInterceptors()...),
		grpc.ChainStreamInterceptor(s.streamInterceptors()...),
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes+(1<<20)),
		grpc.MaxSendMsgSize(64<<20),
	)
	cairnv1.RegisterNamespaceServiceServer(s.grpc, &namespaceService{s: s})
	cairnv1.RegisterObjectServiceServer(s.grpc, &objectService{s: s})
	cairnv1.RegisterClusterServiceServer(s.grpc, &clusterService{s: s})
	peerv1.RegisterPeerServiceServer(s.grpc, &peerService{s: s})

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	handler, err := s.httpHandler(ctx)
	if err != nil {
		cancel()
		_ = s.grpcLis.Close()
		_ = s.httpLis.Close()
		return err
	}
	s.http = &http.Server{Handler: handler, ReadHeaderTimeout: httpReadHeaderTimeout}

	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.grpc.Serve(s.grpcLis); err != nil {
			s.log.Error("gRPC server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.publishSelf(ctx)
	}()
	return nil
}

// advertised returns the address to publish: the configured one, or the
// bound one with an unspecified host replaced by loopback.
func advertised(configured string, bound net.Addr) string {
	if configured != "" {
		return configured
	}
	tcp, ok := bound.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return bound.String()
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
}

// GRPCAddr and HTTPAddr return the addresses the server is reachable at
// (after Start).
func (s *Server) GRPCAddr() string { return s.grpcAdvertise }

// HTTPAddr returns the REST gateway's address (after Start).
func (s *Server) HTTPAddr() string { return s.httpAdvertise }

// Stop closes the listeners, ends in-flight requests and waits for the
// server's goroutines.
func (s *Server) Stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	_ = s.http.Close()
	s.grpc.Stop()
	s.wg.Wait()
	s.peers.close()
}

// unaryInterceptors is the chain every unary call passes, in order.
// Authentication and authorization plug in at its head.
func (s *Server) unaryInterceptors() []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{
		s.metrics.unary,
		recoverUnary(s.log),
		deadlineUnary(s.cfg.RequestTimeout),
		statusUnary,
	}
}

// streamInterceptors is the chain every streaming call passes.
func (s *Server) streamInterceptors() []grpc.StreamServerInterceptor {
	return []grpc.StreamServerInterceptor{
		recoverStream(s.log),
		statusStream,
	}
}
