package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Overload protection. Past its bounds a node refuses work at once with
// RESOURCE_EXHAUSTED (HTTP 429), a RetryInfo and an ErrorInfo with reason
// OVERLOADED, instead of queueing without limit: admitted requests keep a
// latency bounded by the bound divided by the throughput, and clients learn
// to back off. Two bounds:
//
//   - MaxInflightRequests: unary API calls a node serves at once (reads,
//     writes it forwards, admin calls). Streams have their own bounds.
//   - MaxInflightProposals: writes the leader has handed to Raft and not
//     yet seen applied, from its own clients and forwarded by followers.

// ReasonOverloaded is the ErrorInfo reason of a request refused because a
// bound on work in flight was reached; REST adds a Retry-After header.
const ReasonOverloaded = "OVERLOADED"

// overloadRetryDelay is the retry hint of a refused request: about the
// time a full queue of proposals takes to drain on a small cluster.
const overloadRetryDelay = 100 * time.Millisecond

// gate admits up to limit holders at once.
type gate struct {
	name  string // what is bounded, for the error message
	field string // the setting that bounds it
	limit int64
	n     atomic.Int64
}

func newGate(name, field string, limit int) *gate {
	return &gate{name: name, field: field, limit: int64(limit)}
}

// enter admits the caller or returns the overload error; an admitted caller
// must call leave.
func (g *gate) enter(nodeID string) error {
	if g.n.Add(1) > g.limit {
		g.n.Add(-1)
		return overloaded(fmt.Sprintf("node %s has %d %s in flight (limit %d, %s); retry after %s",
			nodeID, g.limit, g.name, g.limit, g.field, overloadRetryDelay), g.field, g.limit)
	}
	return nil
}

func (g *gate) leave() { g.n.Add(-1) }

// inflight returns how many callers hold the gate.
func (g *gate) inflight() int64 { return g.n.Load() }

func overloaded(msg, field string, limit int64) error {
	st, err := status.New(codes.ResourceExhausted, msg).WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(overloadRetryDelay)},
		&errdetails.ErrorInfo{Reason: ReasonOverloaded, Domain: "cairn", Metadata: map[string]string{"limit": strconv.FormatInt(limit, 10), "setting": field}},
	)
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}

// admitUnary bounds the unary calls in flight on this node. The open probe
// methods (health, reflection) are not counted: an overloaded node must
// still answer its load balancer.
func (s *Server) admitUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if openMethods[info.FullMethod] {
		return h(ctx, req)
	}
	if err := s.requests.enter(s.node.ID()); err != nil {
		s.metrics.overloaded.WithLabelValues("requests").Inc()
		return nil, err
	}
	defer s.requests.leave()
	return h(ctx, req)
}

// retryAfter sets the Retry-After header of a REST answer to a status that
// carries a RetryInfo (whole seconds, at least 1).
func retryAfter(w http.ResponseWriter, st *status.Status) {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			secs := math.Ceil(ri.GetRetryDelay().AsDuration().Seconds())
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(secs))))
			return
		}
	}
}
