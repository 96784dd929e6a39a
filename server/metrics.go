package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// metrics are one server's Prometheus metrics, in a registry of its own
// (several nodes may share a process under `cairn dev`).
type metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	forwarded  *prometheus.CounterVec
	proposals  prometheus.Histogram
	watches    prometheus.Gauge
	overloaded *prometheus.CounterVec
	// mappingReleases counts hand-backs of the state map's pages (memory.go).
	mappingReleases prometheus.Counter
}

func newMetrics(node Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_grpc_requests_total", Help: "gRPC requests handled, by method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_grpc_request_seconds", Help: "gRPC request latency, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
	}
	m.forwarded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cairn_forwarded_total", Help: "Writes and read-index requests this node forwarded to the leader, by kind.",
	}, []string{"kind"})
	m.proposals = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "cairn_propose_seconds", Help: "Time from proposing a command on the leader until it is committed and applied there.",
		Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
	})
	m.overloaded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cairn_overloaded_total", Help: "Requests refused with RESOURCE_EXHAUSTED because a bound on work in flight was reached, by bound (requests, proposals).",
	}, []string{"bound"})
	m.mappingReleases = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cairn_state_map_releases_total", Help: "Times this node handed the resident pages of its state database's memory map back to the kernel, its file-backed memory having passed --max-mapped-memory-bytes.",
	})
	m.watches = prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_watch_streams", Help: "Watch streams this node is serving."})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency, m.forwarded, m.proposals, m.watches, m.overloaded, m.mappingReleases,
		gauge("cairn_raft_term", "Current Raft term.", func() float64 { return float64(node.Status().Term) }),
		gauge("cairn_raft_commit_index", "Raft commit index.", func() float64 { return float64(node.Status().CommitIndex) }),
		gauge("cairn_raft_applied_index", "Index the state machine has applied.", func() float64 { return float64(node.AppliedIndex()) }),
		gauge("cairn_raft_leader", "1 when this node is the leader.", func() float64 {
			if node.IsLeader() {
				return 1
			}
			return 0
		}),
	)
	return m
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.latency.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(info.FullMethod, status.Code(toStatus(err)).String()).Inc()
	return resp, err
}
