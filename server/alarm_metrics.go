package server

import (
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// alarmMetrics are the alarm metrics of one server: counts by state
// (from the replicated namespace records, so any node reports them),
// and, where deliveries start (the leader's webhook scheduler, the node
// that serves a claim), the delivery delay and the attempts.
type alarmMetrics struct {
	delay    prometheus.Histogram
	attempts *prometheus.CounterVec
}

func newAlarmMetrics(reg *prometheus.Registry, state State) *alarmMetrics {
	m := &alarmMetrics{
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_alarm_delivery_delay_seconds",
			Help: "How late delivery attempts start: the time a webhook POST or a claim begins, minus the time the attempt was due (fire_at for the first).",
			// 1 ms to ~65 s.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cairn_alarm_attempts_total",
			Help: "Alarm delivery attempts and their outcomes: claimed (pull), delivered and failed (webhook), completed, rearmed, retry_scheduled, dead, requeued, expired and stale (acks).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.delay, m.attempts, alarmCountCollector{state: state})
	return m
}

// observeDelay records an attempt that started at now and was due at
// dueMs.
func (m *alarmMetrics) observeDelay(now time.Time, dueMs int64) {
	if m == nil || dueMs == 0 {
		return
	}
	m.delay.Observe(max(0, now.Sub(time.UnixMilli(dueMs)).Seconds()))
}

func (m *alarmMetrics) attempt(result string) {
	if m != nil {
		m.attempts.WithLabelValues(result).Inc()
	}
}

// ackOutcome counts what an applied ack did.
func (m *alarmMetrics) ackOutcome(s raftcmdv1.AckStatus) {
	switch s {
	case raftcmdv1.AckStatus_ACK_STATUS_COMPLETED:
		m.attempt("completed")
	case raftcmdv1.AckStatus_ACK_STATUS_REARMED:
		m.attempt("rearmed")
	case raftcmdv1.AckStatus_ACK_STATUS_RETRY_SCHEDULED:
		m.attempt("retry_scheduled")
	case raftcmdv1.AckStatus_ACK_STATUS_DEAD:
		m.attempt("dead")
	case raftcmdv1.AckStatus_ACK_STATUS_REQUEUED:
		m.attempt("requeued")
	case raftcmdv1.AckStatus_ACK_STATUS_STALE:
		m.attempt("stale")
	}
}

// alarmCountCollector reports cairn_alarms{namespace, state} from the
// namespaces' replicated counts at each scrape.
type alarmCountCollector struct{ state State }

var alarmCountDesc = prometheus.NewDesc("cairn_alarms", "Alarms by namespace and state (pending, delivering, dead), as this node has applied them.", []string{"namespace", "state"}, nil)

func (c alarmCountCollector) Describe(ch chan<- *prometheus.Desc) { ch <- alarmCountDesc }

func (c alarmCountCollector) Collect(ch chan<- prometheus.Metric) {
	nss, err := c.state.Namespaces()
	if err != nil {
		return
	}
	for _, ns := range nss {
		a := ns.GetAlarms()
		for _, v := range []struct {
			state string
			n     uint64
		}{{"pending", a.GetPending()}, {"delivering", a.GetDelivering()}, {"dead", a.GetDead()}} {
			ch <- prometheus.MustNewConstMetric(alarmCountDesc, prometheus.GaugeValue, float64(v.n), ns.Name, v.state)
		}
	}
}
