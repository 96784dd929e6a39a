// Package server serves cairn's public gRPC API and its REST gateway on
// one node, and the internal API the nodes use among themselves: it
// validates requests, forwards writes to the leader, serves reads at the
// asked consistency, and reports health and metrics. It reads the state
// only through the FSM's query API and reaches Raft only through Node.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/auth"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"
)

// Server is one node's API front. Create it with New, then Start; Stop
// ends it.
type Server struct {
	cfg   Config
	node  Node
	state State
	hub   *WatchHub
	log   *slog.Logger
	peers peers

	dataDirs []string // whose free space the disk guard watches (disk.go)
	disk     diskGuard
	proposed atomic.Uint64 // bytes of commands this node let through as leader (checkDisk)

	grpcLis, httpLis             net.Listener
	grpcAdvertise, httpAdvertise string
	grpc                         grpcServers
	codec                        requestCodec     // the API servers' (codec.go)
	selfConn                     *grpc.ClientConn // to this node's own gRPC API
	http                         *http.Server
	metrics                      *metrics
	alarmMetrics                 *alarmMetrics
	alarmClient                  *http.Client // webhook deliveries

	lastReady atomic.Pointer[readyCheck] // the last readiness check (probes.go)
	requests  *gate                      // unary calls in flight here (overload.go)
	proposals *gate                      // writes in flight through Raft while this node leads

	verifier *auth.Verifier    // nil: no authentication
	tls      *tls.Config       // the client API's; nil: plain text
	gwLis    *bufconn.Listener // the gateway's in-memory connection to the API

	health *healthService // grpc.health.v1 on the public port (health.go)
	// draining ends when Shutdown begins; startDrain ends it.
	draining   context.Context
	startDrain context.CancelFunc

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a server for cfg. It listens on nothing until Start.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Node == nil || deps.State == nil || deps.Watch == nil {
		return nil, errors.New("server: Deps.Node, Deps.State and Deps.Watch are required")
	}
	cfg = cfg.withDefaults()
	return &Server{cfg: cfg, node: deps.Node, state: deps.State, hub: deps.Watch, log: cfg.Logger, dataDirs: deps.DataDirs,
		requests:  newGate("requests", "max_inflight_requests", cfg.MaxInflightRequests),
		proposals: newGate("writes", "max_inflight_proposals", cfg.MaxInflightProposals),
		codec:     newRequestCodec(),
	}, nil
}

// Start binds the gRPC and HTTP listeners and serves until Stop.
func (s *Server) Start() error {
	var err error
	if err := s.loadSecurity(); err != nil {
		return err
	}
	if s.grpcLis, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("server: gRPC listen: %w", err)
	}
	if s.httpLis, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
		_ = s.grpcLis.Close()
		return fmt.Errorf("server: HTTP listen: %w", err)
	}
	s.grpcAdvertise = advertised(s.cfg.AdvertiseGRPCAddr, s.grpcLis.Addr())
	s.httpAdvertise = advertised(s.cfg.AdvertiseHTTPAddr, s.httpLis.Addr())
	s.secureListeners()
	s.gwLis = newGatewayListener()
	s.metrics = newMetrics(s.node)
	s.metrics.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cairn_inflight_requests", Help: "Unary API calls this node is serving (bounded by --max-inflight-requests)."},
			func() float64 { return float64(s.requests.inflight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cairn_inflight_proposals", Help: "Writes this node, as leader, has handed to Raft and not yet applied (bounded by --max-inflight-proposals)."},
			func() float64 { return float64(s.proposals.inflight()) }),
	)
	s.metrics.reg.MustRegister(shardCollector{state: s.state})
	s.metrics.reg.MustRegister(s.diskGauges()...)
	s.alarmMetrics = newAlarmMetrics(s.metrics.reg, s.state)
	s.alarmClient = newWebhookClient(s.cfg.AlarmConcurrency)
	s.draining, s.startDrain = context.WithCancel(context.Background())

	s.grpc = s.newGRPCServers()
	cairnv1.RegisterNamespaceServiceServer(s.grpc, &namespaceService{s: s})
	cairnv1.RegisterObjectServiceServer(s.grpc, &objectService{s: s})
	cairnv1.RegisterClusterServiceServer(s.grpc, &clusterService{s: s})
	cairnv1.RegisterWatchServiceServer(s.grpc, &watchService{s: s})
	cairnv1.RegisterAlarmServiceServer(s.grpc, &alarmService{s: s})
	s.registerProbes()

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	handler, err := s.httpHandler(ctx)
	if err != nil {
		cancel()
		_ = s.grpcLis.Close()
		_ = s.httpLis.Close()
		return err
	}
	s.http = s.newHTTPServer(handler)
	s.serveInternal()
	if s.verifier != nil && s.verifier.ReloadInterval() > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.reloadKeysEvery(ctx, s.verifier.ReloadInterval())
		}()
	}

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
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		s.boundMappedMemory(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.runAlarmScheduler(ctx) // delivers alarms while this node leads
	}()
	go func() {
		defer s.wg.Done()
		s.updateHealth(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.watchDisk(ctx) // the free-space reserve
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
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace
	s.Shutdown(ctx)
}

// Shutdown drains the server: watch streams end at once with a revision to
// resume from, no new request is accepted, and requests in flight may
// finish until ctx ends; then whatever is left is cut.
func (s *Server) Shutdown(ctx context.Context) {
	if s.cancel == nil {
		return
	}
	s.startDrain() // health NOT_SERVING from now on, so load balancers move away; probe streams end
	s.hub.close()  // watch streams end with a revision to resume from
	drained := make(chan struct{})
	go func() {
		_ = s.http.Shutdown(ctx)
		s.grpc.GracefulStop()
		close(drained)
	}()
	select {
	case <-drained:
	case <-ctx.Done():
		_ = s.http.Close()
		s.grpc.Stop()
		<-drained
	}
	s.cancel()
	if s.selfConn != nil {
		_ = s.selfConn.Close()
	}
	s.wg.Wait()
	s.peers.close()
}

// unaryInterceptors is the chain every unary call of the API passes, in
// order; authentication and authorization (auth.go) come before the
// deadline, so a refused call costs nothing.
func (s *Server) unaryInterceptors() []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{
		s.metrics.unary,
		s.codec.checkDecodedUnary,
		recoverUnary(s.log),
		s.admitUnary,
		s.authUnary,
		deadlineUnary(s.cfg.RequestTimeout),
		statusUnary,
	}
}

// streamInterceptors is the chain every streaming call passes.
func (s *Server) streamInterceptors() []grpc.StreamServerInterceptor {
	return []grpc.StreamServerInterceptor{
		s.codec.checkDecodedStream,
		recoverStream(s.log),
		s.authStream,
		s.endReflectionStreams,
		statusStream,
	}
}
