package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Helpers of the alarm tests: a webhook receiver that records what it
// gets, namespaces with alarm settings, alarms set in bulk.

func (n *testNode) alarms() cairnv1.AlarmServiceClient { return cairnv1.NewAlarmServiceClient(n.conn) }

// verifyCairnSignature is the README's verification snippet: it reports
// whether header (the Cairn-Signature value) signs body with secret and
// was made within tolerance of now.
func verifyCairnSignature(secret, header string, body []byte, now time.Time, tolerance time.Duration) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(t, 0)).Abs() > tolerance {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return hmac.Equal([]byte(sig), []byte(hex.EncodeToString(mac.Sum(nil))))
}

// hookBody is the webhook body as the README documents it.
type hookBody struct {
	Namespace     string `json:"namespace"`
	Object        string `json:"object"`
	Alarm         string `json:"alarm"`
	ScheduledTime string `json:"scheduled_time"`
	Attempt       uint32 `json:"attempt"`
	Payload       []byte `json:"payload"`
	DeliveryID    string `json:"delivery_id"`
}

// delivery is one request a hookServer received.
type delivery struct {
	at     time.Time
	body   hookBody
	raw    []byte
	sig    string
	status int
}

func (d delivery) scheduled(t testing.TB) time.Time {
	t.Helper()
	st, err := time.Parse(time.RFC3339Nano, d.body.ScheduledTime)
	if err != nil {
		t.Fatalf("scheduled_time %q is not RFC 3339: %v", d.body.ScheduledTime, err)
	}
	return st
}

// hookServer is a webhook receiver. respond picks the status of the nth
// (1-based) delivery of an alarm; nil answers 200.
type hookServer struct {
	*httptest.Server
	respond func(d delivery, nth int) int
	latency time.Duration
	body    []byte // answered instead of "status <code>" when set

	mu    sync.Mutex
	got   []delivery
	count map[string]int
}

func newHookServer(t testing.TB, respond func(d delivery, nth int) int) *hookServer {
	t.Helper()
	h := &hookServer{respond: respond, count: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) serve(w http.ResponseWriter, r *http.Request) {
	d := delivery{at: time.Now(), sig: r.Header.Get(SignatureHeader)}
	d.raw, _ = io.ReadAll(r.Body)
	if err := json.Unmarshal(d.raw, &d.body); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	if h.latency > 0 {
		time.Sleep(h.latency)
	}
	key := d.body.Object + "/" + d.body.Alarm
	h.mu.Lock()
	h.count[key]++
	nth := h.count[key]
	h.mu.Unlock()
	d.status = http.StatusOK
	if h.respond != nil {
		d.status = h.respond(d, nth)
	}
	h.mu.Lock()
	h.got = append(h.got, d)
	h.mu.Unlock()
	w.WriteHeader(d.status)
	if h.body != nil {
		_, _ = w.Write(h.body)
		return
	}
	_, _ = fmt.Fprintf(w, "status %d", d.status)
}

// deliveries returns what was received so far, in arrival order.
func (h *hookServer) deliveries() []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.got...)
}

// firstOK returns, per "object/name", the first delivery answered 2xx.
func (h *hookServer) firstOK() map[string]delivery {
	out := map[string]delivery{}
	for _, d := range h.deliveries() {
		key := d.body.Object + "/" + d.body.Alarm
		if _, seen := out[key]; !seen && d.status/100 == 2 {
			out[key] = d
		}
	}
	return out
}

func (h *hookServer) forAlarm(object, name string) []delivery {
	var out []delivery
	for _, d := range h.deliveries() {
		if d.body.Object == object && d.body.Alarm == name {
			out = append(out, d)
		}
	}
	return out
}

func u32p(v uint32) *uint32 { return &v }

// mustAlarmNamespace creates (or updates) namespace ns with alarm
// settings.
func mustAlarmNamespace(t testing.TB, n *testNode, ns string, settings *cairnv1.AlarmSettings) *cairnv1.PutNamespaceResponse {
	t.Helper()
	var resp *cairnv1.PutNamespaceResponse
	err := retryUnavailable(t, "PutNamespace "+ns, func() (err error) {
		resp, err = n.namespaces().PutNamespace(testCtx(t), &cairnv1.PutNamespaceRequest{
			Namespace: ns, Settings: &cairnv1.NamespaceSettings{Alarms: settings},
		})
		return err
	})
	if err != nil {
		t.Fatalf("PutNamespace(%q) via %s: %v", ns, n.id, err)
	}
	return resp
}

// webhookSettings points a namespace at h.
func webhookSettings(h *hookServer, secret string, retryInitial time.Duration, maxRetries uint32) *cairnv1.AlarmSettings {
	return &cairnv1.AlarmSettings{WebhookUrl: h.URL + "/hook", WebhookSecret: secret,
		RetryInitialMs: uint64(retryInitial.Milliseconds()), MaxRetries: u32p(maxRetries)}
}

// plannedAlarm is an alarm a test sets and expects.
type plannedAlarm struct {
	object, name string
	fireAt       time.Time
}

// mustSetAlarms sets the alarms through transactions of 100 set_alarm
// ops each.
func mustSetAlarms(t testing.TB, n *testNode, ns string, alarms []plannedAlarm) {
	t.Helper()
	for i := 0; i < len(alarms); i += 100 {
		req := &cairnv1.TxnRequest{Namespace: ns, RequestId: fmt.Sprintf("set-%s-%d-%d", ns, i, time.Now().UnixNano())}
		for _, a := range alarms[i:min(i+100, len(alarms))] {
			req.Success = append(req.Success, &cairnv1.TxnOp{Op: &cairnv1.TxnOp_SetAlarm{SetAlarm: &cairnv1.SetAlarmOp{
				Object: a.object, Name: a.name, When: &cairnv1.SetAlarmOp_FireAt{FireAt: timestamppb.New(a.fireAt)},
			}}})
		}
		req.RequestId = testRequestID() // a retry after an unknown outcome applies once
		err := retryUnavailable(t, "Txn set_alarm", func() error {
			_, err := n.objects().Txn(testCtx(t), req)
			return err
		})
		if err != nil {
			t.Fatalf("setting alarms %d..: %v", i, err)
		}
	}
}

// spreadAlarms plans count alarms of distinct objects firing evenly over
// span, starting at start.
func spreadAlarms(prefix string, count int, start time.Time, span time.Duration) []plannedAlarm {
	out := make([]plannedAlarm, count)
	for i := range out {
		out[i] = plannedAlarm{object: fmt.Sprintf("%s-%04d", prefix, i), name: "default",
			fireAt: start.Add(time.Duration(i) * span / time.Duration(count)).Truncate(time.Millisecond)}
	}
	return out
}

// checkDeliveries checks that every planned alarm was delivered (2xx),
// none before its fire time, and returns each one's delay (first
// successful delivery minus fire time), sorted.
func checkDeliveries(t testing.TB, h *hookServer, planned []plannedAlarm) []time.Duration {
	t.Helper()
	first := h.firstOK()
	var delays []time.Duration
	for _, p := range planned {
		d, ok := first[p.object+"/"+p.name]
		if !ok {
			t.Errorf("alarm %s/%s (fire at %s) was never delivered", p.object, p.name, p.fireAt.Format(time.RFC3339Nano))
			continue
		}
		delays = append(delays, d.at.Sub(p.fireAt))
	}
	for _, d := range h.deliveries() {
		if d.at.Before(d.scheduled(t)) {
			t.Errorf("alarm %s/%s delivered at %s, before its fire time %s", d.body.Object, d.body.Alarm, d.at.Format(time.RFC3339Nano), d.body.ScheduledTime)
		}
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	return delays
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
