package server

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthService is the gRPC health service (grpc.health.v1) of the public
// port. Every name it knows, "" for the whole node and each API service,
// has the node's one status: SERVING while Server.serving holds, as
// updateHealth sets it, NOT_SERVING otherwise and from the moment the
// node drains.
//
// It is grpc-go's health.Server but for Watch on a draining node: that
// one would keep its stream open, holding the graceful stop until its
// deadline; this one sends NOT_SERVING and ends the stream (Unavailable),
// so a watcher learns of the shutdown and the drain does not wait for it.
type healthService struct {
	healthpb.UnimplementedHealthServer
	names    map[string]bool
	draining <-chan struct{} // closed when the node starts draining

	mu      sync.Mutex
	serving bool
	changed chan struct{} // closed and replaced when serving changes
}

func newHealthService(names []string, draining <-chan struct{}) *healthService {
	h := &healthService{names: map[string]bool{}, draining: draining, changed: make(chan struct{})}
	for _, n := range names {
		h.names[n] = true
	}
	return h
}

// set records whether the node is serving and reports whether that
// changed.
func (h *healthService) set(serving bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.serving == serving {
		return false
	}
	h.serving = serving
	close(h.changed)
	h.changed = make(chan struct{})
	return true
}

// state returns the status to report, whether the node is draining, and
// a channel closed at the next change.
func (h *healthService) state() (healthpb.HealthCheckResponse_ServingStatus, bool, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.draining:
		return healthpb.HealthCheckResponse_NOT_SERVING, true, h.changed
	default:
	}
	if h.serving {
		return healthpb.HealthCheckResponse_SERVING, false, h.changed
	}
	return healthpb.HealthCheckResponse_NOT_SERVING, false, h.changed
}

// Check implements grpc.health.v1.Health: the status of a known name,
// NotFound for any other.
func (h *healthService) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if !h.names[req.Service] {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.Service)
	}
	st, _, _ := h.state()
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// List implements grpc.health.v1.Health: every known name's status.
func (h *healthService) List(context.Context, *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	st, _, _ := h.state()
	out := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	for n := range h.names {
		out.Statuses[n] = &healthpb.HealthCheckResponse{Status: st}
	}
	return out, nil
}

// Watch implements grpc.health.v1.Health: the status now, then each
// change, until the client leaves or the node drains (after sending
// NOT_SERVING). An unknown name gets SERVICE_UNKNOWN and the stream stays
// open, as the protocol asks.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	known := h.names[req.Service]
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		st, draining, changed := h.state()
		if !known {
			st = healthpb.HealthCheckResponse_SERVICE_UNKNOWN
		}
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		if draining {
			return status.Error(codes.Unavailable, "node is shutting down")
		}
		select {
		case <-changed:
		case <-h.draining:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}
