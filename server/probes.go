package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cairndb/cairn"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The standard probes and discovery services, for the tools operators
// already run:
//
//   - the gRPC health service (grpc.health.v1) on the public gRPC port,
//     SERVING exactly when /readyz answers 200 (serving), for load
//     balancers, Kubernetes gRPC probes and grpc-go's client-side health
//     checking (Watch);
//   - gRPC server reflection (v1 and v1alpha) on the same port, so that
//     grpcurl and similar tools need no .proto files; it describes the
//     public schema only;
//   - the OpenAPI document of the REST API at GET /openapi.json.
//
// All are open without a token (openMethods, and the open REST routes in
// gateway.go): a probe carries no credentials, and the schema they
// describe is the public one.

// healthPollInterval is how often the health status is recomputed. The
// conditions it depends on (a known leader, the applied index against the
// commit index) change with heartbeats and applies, for which Raft has no
// notification, so the status is polled; 100 ms is a small fraction of an
// election timeout and costs a few atomic loads.
const healthPollInterval = 100 * time.Millisecond

// serving reports whether this node can answer requests now: it is not
// draining, it knows a leader (a follower has heard from it within the
// heartbeat timeout, or Raft would have cleared it; a leader that lost its
// quorum for the leader lease steps down), it has applied what its commit
// index covers, and a check against the leader's read index (ready) passed
// within readyFresh. The commit index alone cannot tell: a node that has
// just joined or is installing a snapshot knows of no commit yet, and a
// follower's commit index stops at the end of its own log, however far
// behind it is. /readyz (which checks afresh) and the health service report
// it.
func (s *Server) serving() bool {
	last := s.lastReady.Load()
	return s.draining.Err() == nil && s.node.CaughtUp() && last != nil && last.ok && time.Since(last.at) < readyFresh
}

// readyCheck is the outcome of one check against the leader.
type readyCheck struct {
	at  time.Time
	ok  bool
	msg string // why not, when not ok
}

const (
	// readyTimeout bounds the read index a check asks of the leader.
	readyTimeout = 2 * time.Second
	// readyEvery is how often the health loop checks again while serving;
	// readyFresh how long a passed check counts.
	readyEvery = time.Second
	readyFresh = 3 * time.Second
)

// ready checks whether this node is serving, asking the leader for the
// index it has committed (confirmed with a quorum) and comparing it with
// what is applied here, and records the outcome for serving.
func (s *Server) ready(ctx context.Context) (string, bool) {
	check := s.checkReady(ctx)
	s.lastReady.Store(check)
	return check.msg, check.ok
}

func (s *Server) checkReady(ctx context.Context) *readyCheck {
	now := time.Now()
	st := s.node.Status()
	switch {
	case s.draining.Err() != nil:
		return &readyCheck{at: now, msg: "draining"}
	case !s.node.CaughtUp():
		return &readyCheck{at: now, msg: fmt.Sprintf("leader %q, commit index %d, applied index %d", st.LeaderID, st.CommitIndex, st.AppliedIndex)}
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	index, err := s.readIndexOnce(ctx)
	if err != nil {
		return &readyCheck{at: now, msg: fmt.Sprintf("leader %q cannot confirm its commit index: %s", st.LeaderID, status.Convert(toStatus(err)).Message())}
	}
	if !s.node.Covers(index) {
		return &readyCheck{at: now, msg: fmt.Sprintf("applied index %d, the leader has committed %d", s.node.AppliedIndex(), index)}
	}
	return &readyCheck{at: now, ok: true}
}

// registerProbes registers the health and reflection services on the
// public gRPC server. Call it after the API services: the health service
// reports each of them by name, and reflection lists what is registered.
func (s *Server) registerProbes() {
	names := []string{""} // the whole node
	for name := range s.grpc.public.GetServiceInfo() {
		names = append(names, name)
	}
	s.health = newHealthService(names, s.draining.Done())
	healthpb.RegisterHealthServer(s.grpc.public, s.health)

	schema := &publicSchema{services: s.grpc.public}
	opts := reflection.ServerOptions{Services: s.grpc.public, DescriptorResolver: schema, ExtensionResolver: schema}
	reflectionv1.RegisterServerReflectionServer(s.grpc.public, reflection.NewServerV1(opts))
	reflectionv1alpha.RegisterServerReflectionServer(s.grpc.public, reflection.NewServer(opts))

	s.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_serving", Help: "1 when this node can answer requests (it knows a leader and has applied what is committed), as /readyz and the gRPC health service report.",
	}, func() float64 {
		if s.serving() {
			return 1
		}
		return 0
	}))
}

// updateHealth keeps the health service's status in step with serving
// until ctx ends, logging each change.
func (s *Server) updateHealth(ctx context.Context) {
	t := time.NewTicker(healthPollInterval)
	defer t.Stop()
	for {
		if last := s.lastReady.Load(); last == nil || !last.ok || time.Since(last.at) >= readyEvery {
			s.ready(ctx)
		}
		if serving := s.serving(); s.health.set(serving) {
			st := s.node.Status()
			s.log.Info("health status changed", "serving", serving, "state", st.State, "leader", st.LeaderID,
				"commit_index", st.CommitIndex, "applied_index", st.AppliedIndex)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// endReflectionStreams ends open server reflection streams when the node
// starts draining. A reflection stream lasts as long as its client wants
// and its handler waits in Recv, which no server-side context reaches, so
// the handler runs aside and the call ends with Unavailable; the handler's
// Recv then fails as the call is finished, and it returns. Without this a
// tool left connected would hold the graceful stop until its deadline.
func (s *Server) endReflectionStreams(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod != reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName &&
		info.FullMethod != reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName {
		return h(srv, ss)
	}
	done := make(chan error, 1)
	go func() { done <- h(srv, ss) }()
	select {
	case err := <-done:
		return err
	case <-s.draining.Done():
		return status.Error(codes.Unavailable, "node is shutting down")
	}
}

// serveOpenAPI answers the OpenAPI (Swagger 2.0) document of the REST
// API, generated from proto/ into api/cairn.swagger.json and embedded in
// the binary.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(cairn.OpenAPI)
}

// publicSchema resolves descriptors for server reflection from the public
// schema only: the files of the services the public port serves and the
// files they import. The internal schemas linked into the binary (the
// peer API, the Raft command format) resolve as not found, exactly as
// names that do not exist.
type publicSchema struct {
	services reflection.ServiceInfoProvider
	once     sync.Once
	files    map[string]bool // paths of the public files
}

// public reports whether fd belongs to the public schema. The set is
// built on first use, when every service is registered.
func (p *publicSchema) public(fd protoreflect.FileDescriptor) bool {
	p.once.Do(func() {
		p.files = map[string]bool{}
		var add func(fd protoreflect.FileDescriptor)
		add = func(fd protoreflect.FileDescriptor) {
			if p.files[fd.Path()] {
				return
			}
			p.files[fd.Path()] = true
			imports := fd.Imports()
			for i := 0; i < imports.Len(); i++ {
				add(imports.Get(i).FileDescriptor)
			}
		}
		for name := range p.services.GetServiceInfo() {
			if d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name)); err == nil {
				add(d.ParentFile())
			}
		}
	})
	return p.files[fd.Path()]
}

func notFound(name string) error { return fmt.Errorf("%s: %w", name, protoregistry.NotFound) }

// FindFileByPath implements protodesc.Resolver.
func (p *publicSchema) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
	if err != nil || !p.public(fd) {
		return nil, notFound(path)
	}
	return fd, nil
}

// FindDescriptorByName implements protodesc.Resolver.
func (p *publicSchema) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil || !p.public(d.ParentFile()) {
		return nil, notFound(string(name))
	}
	return d, nil
}

// FindExtensionByName implements reflection.ExtensionResolver.
func (p *publicSchema) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	xt, err := protoregistry.GlobalTypes.FindExtensionByName(field)
	if err != nil || !p.public(xt.TypeDescriptor().ParentFile()) {
		return nil, notFound(string(field))
	}
	return xt, nil
}

// FindExtensionByNumber implements reflection.ExtensionResolver.
func (p *publicSchema) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	xt, err := protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
	if err != nil || !p.public(xt.TypeDescriptor().ParentFile()) {
		return nil, notFound(fmt.Sprintf("%s extension %d", message, field))
	}
	return xt, nil
}

// RangeExtensionsByMessage implements reflection.ExtensionResolver.
func (p *publicSchema) RangeExtensionsByMessage(message protoreflect.FullName, f func(protoreflect.ExtensionType) bool) {
	protoregistry.GlobalTypes.RangeExtensionsByMessage(message, func(xt protoreflect.ExtensionType) bool {
		if !p.public(xt.TypeDescriptor().ParentFile()) {
			return true
		}
		return f(xt)
	})
}
