package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/auth"
	"github.com/cairndb/cairn/tlsutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
)

// A node serves three gRPC servers:
//
//   - public: the API on the gRPC port (TLS when configured), with a bound
//     on concurrent streams per connection;
//   - gateway: the same API for the REST gateway, in process over an
//     in-memory connection, so REST requests pass the same interceptors
//     (authentication included) without a second TLS hop and without
//     sharing the public per-connection stream bound;
//   - peer: the peer API on the Raft port (mutual TLS when configured),
//     with the cluster operations followers forward to the leader.

// TLSConfig configures TLS on the client API: the gRPC port and the REST
// port serve the same certificate. The zero value means plain text.
type TLSConfig struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key. Both
	// or neither.
	CertFile string
	KeyFile  string
}

// Enabled reports whether TLS is configured.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// grpcServers holds the public and the gateway gRPC servers, which serve
// the same API, and the peer server. RegisterService registers an API
// service on the public and the gateway server alike, so that every
// service registered in Start is reachable over gRPC and REST; the peer
// server gets its services in newPeerServer.
type grpcServers struct {
	public, gateway, peer *grpc.Server
	unary                 inprocMethods // the API's unary methods, which the gateway calls in process
}

// RegisterService implements grpc.ServiceRegistrar.
func (g grpcServers) RegisterService(desc *grpc.ServiceDesc, impl any) {
	g.public.RegisterService(desc, impl)
	g.gateway.RegisterService(desc, impl)
	g.unary.add(desc, impl)
}

// Serve serves the public API on l.
func (g grpcServers) Serve(l net.Listener) error { return g.public.Serve(l) }

// Stop stops all three servers, ending their calls.
func (g grpcServers) Stop() {
	g.public.Stop()
	g.gateway.Stop()
	g.peer.Stop()
}

// GracefulStop stops accepting calls and waits for those in flight, on
// the public and gateway servers first (whose calls the peer server may
// still be serving for other nodes), then on the peer server.
func (g grpcServers) GracefulStop() {
	g.public.GracefulStop()
	g.gateway.GracefulStop()
	g.peer.GracefulStop()
}

// maxResponseBytes bounds an API response (a page of a list, a batch of
// values): past it the call fails with ResourceExhausted.
const maxResponseBytes = 64 << 20

// gatewayBufferBytes is the in-memory connection's buffer.
const gatewayBufferBytes = 1 << 20

// grpcConnectionTimeout bounds a new client connection's TLS and HTTP/2
// handshakes.
const grpcConnectionTimeout = 10 * time.Second

// loadSecurity reads what Config.Auth and Config.TLS name: the token
// verifier and the client API's TLS configuration.
func (s *Server) loadSecurity() error {
	if s.cfg.Auth.Enabled() {
		v, err := auth.NewVerifier(s.cfg.Auth)
		if err != nil {
			return err
		}
		s.verifier = v
	}
	if s.cfg.TLS.Enabled() {
		c, err := tlsutil.ServerTLS(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
		if err != nil {
			return err
		}
		s.tls = c
	}
	return nil
}

// newGRPCServers creates the public, the gateway and the peer servers.
func (s *Server) newGRPCServers() grpcServers {
	common := []grpc.ServerOption{
		grpc.ForceServerCodecV2(s.codec),
		grpc.ChainUnaryInterceptor(s.unaryInterceptors()...),
		grpc.ChainStreamInterceptor(s.streamInterceptors()...),
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes + (1 << 20)),
		grpc.MaxSendMsgSize(maxResponseBytes),
		grpc.MaxHeaderListSize(uint32(s.cfg.MaxHeaderBytes)),
	}
	public := grpc.NewServer(append(common,
		grpc.MaxConcurrentStreams(s.cfg.MaxConcurrentStreams),
		grpc.ConnectionTimeout(grpcConnectionTimeout),
	)...)
	return grpcServers{public: public, gateway: grpc.NewServer(common...), peer: s.newPeerServer(), unary: inprocMethods{}}
}

// newPeerServer creates the server of the peer API: the calls followers
// make of the leader, and the cluster operations they forward.
func (s *Server) newPeerServer() *grpc.Server {
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.metrics.unary, recoverUnary(s.log), s.peerAuthUnary, deadlineUnary(s.cfg.RequestTimeout), statusUnary),
		grpc.ChainStreamInterceptor(recoverStream(s.log), s.peerAuthStream, statusStream),
		grpc.MaxRecvMsgSize(64<<20),
		grpc.MaxSendMsgSize(64<<20),
		grpc.MaxHeaderListSize(uint32(s.cfg.MaxHeaderBytes)),
	)
	peerv1.RegisterPeerServiceServer(g, &peerService{s: s})
	cairnv1.RegisterClusterServiceServer(g, &clusterService{s: s})
	return g
}

// secureListeners wraps the gRPC and HTTP listeners in TLS when it is
// configured: gRPC offers h2, REST h2 and HTTP/1.1.
func (s *Server) secureListeners() {
	if s.tls == nil {
		return
	}
	g := s.tls.Clone()
	g.NextProtos = []string{"h2"}
	s.grpcLis = tls.NewListener(s.grpcLis, g)
	h := s.tls.Clone()
	h.NextProtos = []string{"h2", "http/1.1"}
	s.httpLis = tls.NewListener(s.httpLis, h)
}

// serveInternal serves the gateway's in-memory listener and the peer API
// on the Raft port, until Stop.
func (s *Server) serveInternal() {
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.grpc.gateway.Serve(s.gwLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("gateway gRPC server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := s.grpc.peer.Serve(s.node.PeerListener()); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("peer API server stopped", "err", err)
		}
	}()
}

// newHTTPServer returns the REST server with its limits: header size,
// slow clients (reading the header, then the whole request), idle
// keep-alive connections. It has no write timeout, since streaming
// responses (watches) may last as long as the client wants.
func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       s.cfg.HTTPReadTimeout,
		IdleTimeout:       s.cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// newGatewayListener returns the in-memory listener the gateway dials.
func newGatewayListener() *bufconn.Listener { return bufconn.Listen(gatewayBufferBytes) }

// gatewayTarget is the gRPC target the gateway dials: dialGateway ignores
// it and connects in memory.
const gatewayTarget = "passthrough:///cairn-gateway"

func (s *Server) dialGateway(ctx context.Context, _ string) (net.Conn, error) {
	return s.gwLis.DialContext(ctx)
}
