package server

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestAlarmAPI: the alarm API over gRPC and REST, through followers:
// set, get, list, delete, validation, transactions, object info and
// deletion, namespace settings (the secret never comes back).
func TestAlarmAPI(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	f := c.followers(t)[0]
	mustAlarmNamespace(t, f, "api", nil) // pull
	ctx := testCtx(t)

	fireAt := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	set, err := f.alarms().SetAlarm(ctx, &cairnv1.SetAlarmRequest{Namespace: "api", Object: "room/1", Name: "close",
		When: &cairnv1.SetAlarmRequest_FireAt{FireAt: timestamppb.New(fireAt)}, Payload: []byte("hi"), RequestId: "set-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !set.Created || set.Alarm.State != cairnv1.AlarmState_ALARM_STATE_PENDING || !set.Alarm.FireAt.AsTime().Equal(fireAt) ||
		set.Alarm.Payload != nil || set.Alarm.Attempt != 0 {
		t.Fatalf("SetAlarm: %v", set)
	}
	// A retry with the same request id is answered from memory.
	again, err := f.alarms().SetAlarm(ctx, &cairnv1.SetAlarmRequest{Namespace: "api", Object: "room/1", Name: "close",
		When: &cairnv1.SetAlarmRequest_FireAt{FireAt: timestamppb.New(fireAt)}, Payload: []byte("hi"), RequestId: "set-1"})
	if err != nil || !again.Header.Replayed || again.Header.Revision != set.Header.Revision {
		t.Fatalf("retried SetAlarm: %v, %v", again, err)
	}
	// fire_in with a request id: resolved in the log, so a retry is the
	// same command.
	for range 2 {
		r, err := f.alarms().SetAlarm(ctx, &cairnv1.SetAlarmRequest{Namespace: "api", Object: "room/1", Name: "soon",
			When: &cairnv1.SetAlarmRequest_FireIn{FireIn: dur(time.Hour)}, RequestId: "set-2"})
		if err != nil {
			t.Fatalf("SetAlarm fire_in: %v", err)
		}
		if d := time.Until(r.Alarm.FireAt.AsTime()); d < 59*time.Minute || d > time.Hour {
			t.Fatalf("fire_in 1h: fire_at is %s away", d)
		}
	}

	got, err := c.followers(t)[1].alarms().GetAlarm(ctx, &cairnv1.GetAlarmRequest{Namespace: "api", Object: "room/1", Name: "close"})
	if err != nil || string(got.Alarm.Payload) != "hi" || got.Alarm.CreateRevision != set.Header.Revision {
		t.Fatalf("GetAlarm from the other follower: %v, %v", got, err)
	}
	obj, err := f.objects().GetObject(ctx, &cairnv1.GetObjectRequest{Namespace: "api", Object: "room/1"})
	if err != nil || obj.Object.AlarmCount != 2 || obj.Object.KeyCount != 0 {
		t.Fatalf("GetObject of an object with only alarms: %v, %v", obj, err)
	}

	// REST: RFC 3339 times, names with a slash and a space, filters.
	m := restJSON(t, f, "PUT", "/v1/namespaces/api/objects/room%2F2/alarms/wake%20up",
		`{"fire_at": "2030-01-02T03:04:05.678Z", "payload": "aGVsbG8=", "repeat_every": "3600s"}`, http.StatusOK)
	alarm := m["alarm"].(map[string]any)
	if alarm["fire_at"] != "2030-01-02T03:04:05.678Z" || alarm["object"] != "room/2" || alarm["name"] != "wake up" ||
		alarm["repeat_every"] != "3600s" || alarm["state"] != "ALARM_STATE_PENDING" {
		t.Fatalf("REST SetAlarm: %v", m)
	}
	m = restJSON(t, f, "GET", "/v1/namespaces/api/objects/room%2F2/alarms/wake%20up", "", http.StatusOK)
	if a := m["alarm"].(map[string]any); a["payload"] != "aGVsbG8=" || a["next_attempt_at"] != "2030-01-02T03:04:05.678Z" {
		t.Fatalf("REST GetAlarm: %v", m)
	}
	m = restJSON(t, f, "GET", "/v1/namespaces/api/alarms?object_prefix=room&limit=2", "", http.StatusOK)
	if as := m["alarms"].([]any); len(as) != 2 || m["next_page_token"] == "" || m["counts"].(map[string]any)["pending"] != "3" {
		t.Fatalf("REST ListAlarms page 1: %v", m)
	}
	m = restJSON(t, f, "GET", "/v1/namespaces/api/alarms?object_prefix=room&limit=2&page_token="+m["next_page_token"].(string), "", http.StatusOK)
	if as := m["alarms"].([]any); len(as) != 1 || as[0].(map[string]any)["name"] != "wake up" || m["next_page_token"] != "" {
		t.Fatalf("REST ListAlarms page 2: %v", m)
	}
	m = restJSON(t, f, "GET", "/v1/namespaces/api/alarms?state=dead", "", http.StatusOK)
	if as := m["alarms"].([]any); len(as) != 0 {
		t.Fatalf("no alarm is dead: %v", m)
	}

	// Validation: every error names the field and the limit.
	for _, tc := range []struct {
		path, body, want string
	}{
		{"/v1/namespaces/api/objects/o/alarms/a", `{}`, "fire_at"},
		{"/v1/namespaces/api/objects/o/alarms/a", `{"fire_in": "1s", "repeat_every": "0.05s"}`, "repeat_every"},
		{"/v1/namespaces/api/objects/o/alarms/" + strings.Repeat("n", 257), `{"fire_in": "1s"}`, "limit is 256"},
		{"/v1/namespaces/api/objects/o/alarms/a", `{"fire_in": "1s", "payload": "` + base64.StdEncoding.EncodeToString(make([]byte, 64<<10+1)) + `"}`, "limit is 65536"},
		{"/v1/namespaces/api/objects/o/alarms/a", `{"fire_at": "0001-01-01T00:00:00Z"}`, "fire_at"},
	} {
		code, b := restCall(t, f, "PUT", tc.path, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(string(b), tc.want) {
			t.Errorf("PUT %s %.60s: HTTP %d %s; want 400 naming %q", tc.path[:min(len(tc.path), 60)], tc.body, code, b, tc.want)
		}
	}
	if code, b := restCall(t, f, "GET", "/v1/namespaces/api/objects/o/alarms/nope", ""); code != http.StatusNotFound {
		t.Errorf("GET a missing alarm: HTTP %d %s", code, b)
	}
	if code, b := restCall(t, f, "GET", "/v1/namespaces/api/alarms?state=sleeping", ""); code != http.StatusBadRequest || !strings.Contains(string(b), "pending") {
		t.Errorf("bad state filter: HTTP %d %s", code, b)
	}

	// A transaction sets an alarm with the state it guards.
	tx, err := f.objects().Txn(ctx, &cairnv1.TxnRequest{Namespace: "api", Success: []*cairnv1.TxnOp{
		{Op: &cairnv1.TxnOp_Put{Put: &cairnv1.PutOp{Object: "lock-1", Key: "owner", Content: &cairnv1.PutOp_Value{Value: jsonValue(t, "ada")}}}},
		{Op: &cairnv1.TxnOp_SetAlarm{SetAlarm: &cairnv1.SetAlarmOp{Object: "lock-1", Name: "expire", When: &cairnv1.SetAlarmOp_FireIn{FireIn: dur(time.Hour)}}}},
	}})
	if err != nil || !tx.Succeeded || !tx.Results[1].GetSetAlarm().Created {
		t.Fatalf("Txn with set_alarm: %v, %v", tx, err)
	}
	// Deleting an object deletes its alarms in the same commit.
	del, err := f.objects().DeleteObject(ctx, &cairnv1.DeleteObjectRequest{Namespace: "api", Object: "lock-1"})
	if err != nil || del.DeletedKeys != 1 || del.DeletedAlarms != 1 {
		t.Fatalf("DeleteObject: %v, %v", del, err)
	}
	del, err = f.objects().DeleteObject(ctx, &cairnv1.DeleteObjectRequest{Namespace: "api", Object: "room/1"})
	if err != nil || del.DeletedAlarms != 2 {
		t.Fatalf("DeleteObject of an object with only alarms: %v, %v", del, err)
	}
	d, err := f.alarms().DeleteAlarm(ctx, &cairnv1.DeleteAlarmRequest{Namespace: "api", Object: "room/2", Name: "wake up"})
	if err != nil || !d.Deleted {
		t.Fatalf("DeleteAlarm: %v, %v", d, err)
	}

	// Namespace settings: the webhook secret is write-only.
	_, err = f.namespaces().PutNamespace(ctx, &cairnv1.PutNamespaceRequest{Namespace: "hooks", Settings: &cairnv1.NamespaceSettings{
		Alarms: &cairnv1.AlarmSettings{WebhookUrl: "ftp://example.com/x", WebhookSecret: "s"}}})
	wantCode(t, err, codes.InvalidArgument, "webhook_url")
	_, err = f.namespaces().PutNamespace(ctx, &cairnv1.PutNamespaceRequest{Namespace: "hooks", Settings: &cairnv1.NamespaceSettings{
		Alarms: &cairnv1.AlarmSettings{WebhookUrl: "https://example.com/x"}}})
	wantCode(t, err, codes.InvalidArgument, "webhook_secret")
	mustAlarmNamespace(t, f, "hooks", &cairnv1.AlarmSettings{WebhookUrl: "https://example.com/x", WebhookSecret: "top-secret", LeaseMs: 3000})
	m = restJSON(t, f, "GET", "/v1/namespaces/hooks", "", http.StatusOK)
	s := m["namespace"].(map[string]any)["settings"].(map[string]any)["alarms"].(map[string]any)
	if s["webhook_secret"] != "" || s["webhook_secret_set"] != true || s["delivery"] != "ALARM_DELIVERY_WEBHOOK" ||
		s["retry_initial_ms"] != "2000" || s["max_retries"] != float64(6) || s["lease_ms"] != "3000" {
		t.Fatalf("GetNamespace alarm settings: %v", s)
	}
	if strings.Contains(mustJSON(t, m), "top-secret") {
		t.Fatal("GetNamespace shows the webhook secret")
	}
	_, err = f.alarms().ClaimAlarms(ctx, &cairnv1.ClaimAlarmsRequest{Namespace: "hooks"})
	wantCode(t, err, codes.FailedPrecondition, "webhook")
	_, err = f.alarms().ClaimAlarms(ctx, &cairnv1.ClaimAlarmsRequest{Namespace: "api", Worker: "leader:me"})
	wantCode(t, err, codes.InvalidArgument, "leader:")
}

// TestAlarmWebhookRetrySchedule: a receiver that fails the first two
// attempts sees exactly the retry schedule (retry_initial doubling), then
// the alarm completes; every body is signed and says its attempt.
func TestAlarmWebhookRetrySchedule(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	h := newHookServer(t, func(d delivery, nth int) int {
		if nth <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	const retryInitial = 200 * time.Millisecond
	f := c.followers(t)[0]
	mustAlarmNamespace(t, f, "wh", webhookSettings(h, "s3cret", retryInitial, 6))
	fireAt := time.Now().Add(300 * time.Millisecond).Truncate(time.Millisecond)
	if _, err := f.alarms().SetAlarm(testCtx(t), &cairnv1.SetAlarmRequest{Namespace: "wh", Object: "camera-7", Name: "poll",
		When: &cairnv1.SetAlarmRequest_FireAt{FireAt: timestamppb.New(fireAt)}, Payload: []byte(`{"zoom":2}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "three deliveries and the alarm completed", func() bool {
		_, err := f.alarms().GetAlarm(testCtx(t), &cairnv1.GetAlarmRequest{Namespace: "wh", Object: "camera-7", Name: "poll"})
		return len(h.forAlarm("camera-7", "poll")) >= 3 && codes.NotFound == status.Code(err)
	})
	ds := h.forAlarm("camera-7", "poll")
	if len(ds) != 3 {
		t.Fatalf("%d deliveries, want 3", len(ds))
	}
	for i, d := range ds {
		if d.body.Attempt != uint32(i+1) || d.body.Namespace != "wh" || string(d.body.Payload) != `{"zoom":2}` ||
			!d.scheduled(t).Equal(fireAt) || d.body.DeliveryID == "" {
			t.Errorf("delivery %d: %+v", i+1, d.body)
		}
		if !verifyCairnSignature("s3cret", d.sig, d.raw, d.at, 5*time.Minute) {
			t.Errorf("delivery %d: signature %q does not verify", i+1, d.sig)
		}
	}
	if ds[0].at.Before(fireAt) {
		t.Errorf("first delivery at %s, before fire_at %s", ds[0].at, fireAt)
	}
	// Each retry waits retry_initial * 2^(attempt-1) from the failure;
	// the slack covers two log writes and a scheduler tick.
	const slack = 300 * time.Millisecond
	for i, want := range []time.Duration{retryInitial, 2 * retryInitial} {
		gap := ds[i+1].at.Sub(ds[i].at)
		t.Logf("gap after failed attempt %d: %s (schedule %s)", i+1, gap, want)
		if gap < want || gap > want+slack {
			t.Errorf("gap after failed attempt %d is %s, want %s (+ at most %s)", i+1, gap, want, slack)
		}
	}
}

// TestAlarmWebhookDead: a receiver that never succeeds drives the alarm
// to dead after max_retries; it is listed with state=dead and its last
// error, counted, and re-armed by setting it again.
func TestAlarmWebhookDead(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	var mu sync.Mutex
	healthy := false
	h := newHookServer(t, func(delivery, int) int {
		mu.Lock()
		defer mu.Unlock()
		if healthy {
			return http.StatusNoContent
		}
		return http.StatusServiceUnavailable
	})
	h.body = []byte("down \xff\xfe for maintenance") // not UTF-8: the recorded error must still be
	f := c.followers(t)[0]
	mustAlarmNamespace(t, f, "dead", webhookSettings(h, "s", 50*time.Millisecond, 2))
	if _, err := f.alarms().SetAlarm(testCtx(t), &cairnv1.SetAlarmRequest{Namespace: "dead", Object: "o", Name: "a",
		When: &cairnv1.SetAlarmRequest_FireIn{FireIn: dur(0)}}); err != nil {
		t.Fatal(err)
	}
	var dead map[string]any
	waitFor(t, waitLong, "the alarm to be dead", func() bool {
		m := restJSON(t, f, "GET", "/v1/namespaces/dead/alarms?state=dead", "", http.StatusOK)
		if as := m["alarms"].([]any); len(as) == 1 {
			dead = m
			return true
		}
		return false
	})
	a := dead["alarms"].([]any)[0].(map[string]any)
	if a["object"] != "o" || a["attempt"] != float64(3) || a["last_error"] != "HTTP 503: down \uFFFD for maintenance" || a["state"] != "ALARM_STATE_DEAD" {
		t.Fatalf("dead alarm: %v", a)
	}
	if counts := dead["counts"].(map[string]any); counts["dead"] != "1" || counts["pending"] != "0" {
		t.Fatalf("counts: %v", counts)
	}
	if n := len(h.forAlarm("o", "a")); n != 3 {
		t.Fatalf("%d deliveries, want 3 (1 + 2 retries)", n)
	}
	// The leader's metrics count it.
	resp, err := http.Get("http://" + c.leader(t).Server.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`cairn_alarms{namespace="dead",state="dead"} 1`, `cairn_alarm_attempts_total{result="failed"} 3`, "cairn_alarm_delivery_delay_seconds_count 3"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Set again, it is pending (attempt 0), and completes once the
	// receiver answers.
	mu.Lock()
	healthy = true
	mu.Unlock()
	m := restJSON(t, f, "PUT", "/v1/namespaces/dead/objects/o/alarms/a", `{"fire_in": "0s"}`, http.StatusOK)
	if m["created"] != false || m["alarm"].(map[string]any)["attempt"] != float64(0) {
		t.Fatalf("re-armed: %v", m)
	}
	waitFor(t, waitLong, "the re-armed alarm to complete", func() bool {
		code, _ := restCall(t, f, "GET", "/v1/namespaces/dead/objects/o/alarms/a", "")
		return code == http.StatusNotFound
	})
}

// TestAlarmWebhookSignature: the signature verifies with the namespace's
// secret, and fails with another secret, a changed body or an old
// timestamp.
func TestAlarmWebhookSignature(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{})
	h := newHookServer(t, nil)
	n := c.leader(t)
	mustAlarmNamespace(t, n, "sig", webhookSettings(h, "correct horse battery staple", time.Second, 6))
	if _, err := n.alarms().SetAlarm(testCtx(t), &cairnv1.SetAlarmRequest{Namespace: "sig", Object: "o",
		When: &cairnv1.SetAlarmRequest_FireIn{FireIn: dur(0)}, Payload: []byte{0, 1, 2}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "the delivery", func() bool { return len(h.deliveries()) > 0 })
	d := h.deliveries()[0]
	if !strings.HasPrefix(d.sig, "t=") || !strings.Contains(d.sig, ",v1=") {
		t.Fatalf("%s header %q", SignatureHeader, d.sig)
	}
	if !verifyCairnSignature("correct horse battery staple", d.sig, d.raw, time.Now(), 5*time.Minute) {
		t.Fatal("the signature does not verify with the namespace's secret")
	}
	if verifyCairnSignature("wrong secret", d.sig, d.raw, time.Now(), 5*time.Minute) {
		t.Fatal("the signature verifies with a wrong secret")
	}
	tampered := strings.Replace(string(d.raw), `"attempt":1`, `"attempt":2`, 1)
	if tampered == string(d.raw) || verifyCairnSignature("correct horse battery staple", d.sig, []byte(tampered), time.Now(), 5*time.Minute) {
		t.Fatal("the signature verifies a changed body")
	}
	if verifyCairnSignature("correct horse battery staple", d.sig, d.raw, time.Now().Add(time.Hour), 5*time.Minute) {
		t.Fatal("an hour-old signature passes a 5-minute tolerance")
	}
	if d.body.Alarm != "default" || string(d.body.Payload) != "\x00\x01\x02" {
		t.Fatalf("body %s", d.raw)
	}
}

// TestAlarmRepeat: a repeating alarm re-arms itself after each delivery,
// at fire_at + k * repeat_every, never early.
func TestAlarmRepeat(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{})
	h := newHookServer(t, nil)
	n := c.leader(t)
	mustAlarmNamespace(t, n, "rep", webhookSettings(h, "s", time.Second, 6))
	first := time.Now().Add(200 * time.Millisecond).Truncate(time.Millisecond)
	const every = 300 * time.Millisecond
	if _, err := n.alarms().SetAlarm(testCtx(t), &cairnv1.SetAlarmRequest{Namespace: "rep", Object: "camera", Name: "poll",
		When: &cairnv1.SetAlarmRequest_FireAt{FireAt: timestamppb.New(first)}, RepeatEvery: dur(every)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "three deliveries", func() bool { return len(h.forAlarm("camera", "poll")) >= 3 })
	if _, err := n.alarms().DeleteAlarm(testCtx(t), &cairnv1.DeleteAlarmRequest{Namespace: "rep", Object: "camera", Name: "poll"}); err != nil {
		t.Fatal(err)
	}
	for i, d := range h.forAlarm("camera", "poll")[:3] {
		if want := first.Add(time.Duration(i) * every); !d.scheduled(t).Equal(want) {
			t.Errorf("delivery %d scheduled %s, want %s", i+1, d.body.ScheduledTime, want.Format(time.RFC3339Nano))
		}
		if d.at.Before(d.scheduled(t)) || d.body.Attempt != 1 {
			t.Errorf("delivery %d at %s (scheduled %s), attempt %d", i+1, d.at, d.body.ScheduledTime, d.body.Attempt)
		}
	}
}

// claimRecord is one lease a pull worker got.
type claimRecord struct {
	object  string
	worker  string
	attempt uint32
	lease   string
	granted time.Time // lease_expires_at minus the lease
	expires time.Time
	acked   bool // the worker acked it (as failed) while it held it
}

// TestAlarmPullClaims: two workers claiming concurrently (through
// different nodes) never both hold an unexpired lease on the same alarm,
// and leases they leave unacked are redelivered after they expire.
func TestAlarmPullClaims(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	nodes := c.running()
	const lease = 300 * time.Millisecond
	mustAlarmNamespace(t, nodes[0], "pull", &cairnv1.AlarmSettings{RetryInitialMs: 10, MaxRetries: u32p(100)})
	mustSetAlarms(t, nodes[0], "pull", spreadAlarms("job", 20, time.Now(), 0))

	var mu sync.Mutex
	var claims []claimRecord
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w, n := range nodes[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker := []string{"w1", "w2"}[w]
			for i := 0; ctx.Err() == nil; i++ {
				resp, err := n.alarms().ClaimAlarms(ctx, &cairnv1.ClaimAlarmsRequest{Namespace: "pull", Max: 5, Lease: dur(lease), Worker: worker})
				if err != nil {
					continue
				}
				for j, a := range resp.Alarms {
					r := claimRecord{object: a.Object, worker: worker, attempt: a.Attempt, lease: a.LeaseId,
						expires: a.LeaseExpiresAt.AsTime(), granted: a.LeaseExpiresAt.AsTime().Add(-lease)}
					if (i+j)%2 == 0 { // ack half as failed at once; leave the rest to expire
						_, err := n.alarms().AckAlarms(ctx, &cairnv1.AckAlarmsRequest{Namespace: "pull", Acks: []*cairnv1.AlarmAck{{
							Object: a.Object, Name: a.Name, LeaseId: a.LeaseId, Result: &cairnv1.AlarmAck_Retry{Retry: &cairnv1.AlarmRetry{Error: "try later"}}}}})
						r.acked = err == nil
					}
					mu.Lock()
					claims = append(claims, r)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	byAlarm := map[string][]claimRecord{}
	for _, r := range claims {
		byAlarm[r.object] = append(byAlarm[r.object], r)
	}
	if len(byAlarm) != 20 {
		t.Fatalf("%d of 20 alarms were claimed", len(byAlarm))
	}
	redelivered, workers := 0, map[string]bool{}
	for object, rs := range byAlarm {
		sort.Slice(rs, func(i, j int) bool { return rs[i].attempt < rs[j].attempt })
		for i, r := range rs {
			workers[r.worker] = true
			if i == 0 {
				continue
			}
			prev := rs[i-1]
			if r.attempt == prev.attempt {
				t.Fatalf("%s: attempt %d leased twice (%s to %s, %s to %s)", object, r.attempt, prev.lease, prev.worker, r.lease, r.worker)
			}
			if !prev.acked {
				// Only an expiry ended prev's lease: the next one starts after it.
				if r.granted.Before(prev.expires) {
					t.Fatalf("%s: lease %s (%s) granted at %s while lease %s (%s) held it until %s",
						object, r.lease, r.worker, r.granted.Format(time.StampMilli), prev.lease, prev.worker, prev.expires.Format(time.StampMilli))
				}
				redelivered++
			} else if r.granted.Before(prev.granted) {
				t.Fatalf("%s: attempt %d granted before attempt %d", object, r.attempt, prev.attempt)
			}
		}
	}
	t.Logf("%d leases of 20 alarms to %d workers, %d redelivered after an expiry", len(claims), len(workers), redelivered)
	if redelivered == 0 || len(workers) != 2 {
		t.Fatalf("%d redeliveries after expiry, %d workers: the test exercised too little", redelivered, len(workers))
	}
}

// TestAlarmPullLease: an unacked lease expires into a failed attempt and
// the alarm is claimed again after the retry delay; done completes it;
// stale acks are refused with FAILED_PRECONDITION and change nothing; a
// repeating alarm re-arms on done.
func TestAlarmPullLease(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{})
	n := c.leader(t)
	ctx := testCtx(t)
	const lease, retry = 300 * time.Millisecond, 100 * time.Millisecond
	mustAlarmNamespace(t, n, "lease", &cairnv1.AlarmSettings{RetryInitialMs: uint64(retry.Milliseconds()), LeaseMs: uint64(lease.Milliseconds())})
	if _, err := n.alarms().SetAlarm(ctx, &cairnv1.SetAlarmRequest{Namespace: "lease", Object: "o", When: &cairnv1.SetAlarmRequest_FireIn{FireIn: dur(0)}, Payload: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	claim := func() []*cairnv1.Alarm {
		resp, err := n.alarms().ClaimAlarms(ctx, &cairnv1.ClaimAlarmsRequest{Namespace: "lease", Worker: "w"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Alarms
	}
	first := claim()
	if len(first) != 1 || first[0].Attempt != 1 || string(first[0].Payload) != "p" || first[0].Holder != "w" {
		t.Fatalf("first claim: %v", first)
	}
	if again := claim(); len(again) != 0 {
		t.Fatalf("claimed again while leased: %v", again)
	}
	var second []*cairnv1.Alarm
	waitFor(t, waitLong, "the alarm to be claimable again", func() bool {
		second = claim()
		return len(second) == 1
	})
	granted := second[0].LeaseExpiresAt.AsTime().Add(-lease)
	if second[0].Attempt != 2 || !strings.Contains(second[0].LastError, "expired") || granted.Before(first[0].LeaseExpiresAt.AsTime().Add(retry)) {
		t.Fatalf("second claim %v granted at %s; want attempt 2 after the first lease expired (%s) plus %s", second[0], granted, first[0].LeaseExpiresAt.AsTime(), retry)
	}
	// A stale ack (the first lease) is refused and changes nothing.
	_, err := n.alarms().AckAlarms(ctx, &cairnv1.AckAlarmsRequest{Namespace: "lease", Acks: []*cairnv1.AlarmAck{{
		Object: "o", LeaseId: first[0].LeaseId, Result: &cairnv1.AlarmAck_Done{Done: true}}}})
	wantCode(t, err, codes.FailedPrecondition, first[0].LeaseId, second[0].LeaseId)
	code, b := restCall(t, n, "POST", "/v1/namespaces/lease/alarms:ack", `{"acks": [{"object": "o", "lease_id": "`+first[0].LeaseId+`", "done": true}]}`)
	if code != http.StatusBadRequest || !strings.Contains(string(b), "lease") {
		t.Fatalf("stale ack over REST: HTTP %d %s", code, b)
	}
	ack, err := n.alarms().AckAlarms(ctx, &cairnv1.AckAlarmsRequest{Namespace: "lease", Acks: []*cairnv1.AlarmAck{{
		Object: "o", LeaseId: second[0].LeaseId, Result: &cairnv1.AlarmAck_Done{Done: true}}}})
	if err != nil || ack.Results[0].Status != cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_COMPLETED {
		t.Fatalf("ack done: %v, %v", ack, err)
	}
	if _, err := n.alarms().GetAlarm(ctx, &cairnv1.GetAlarmRequest{Namespace: "lease", Object: "o"}); status.Code(err) != codes.NotFound {
		t.Fatalf("alarm after done: %v", err)
	}

	// A repeating alarm: done re-arms it at its next occurrence.
	start := time.Now().Truncate(time.Millisecond)
	if _, err := n.alarms().SetAlarm(ctx, &cairnv1.SetAlarmRequest{Namespace: "lease", Object: "r",
		When: &cairnv1.SetAlarmRequest_FireAt{FireAt: timestamppb.New(start)}, RepeatEvery: dur(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got := claim()
	ack, err = n.alarms().AckAlarms(ctx, &cairnv1.AckAlarmsRequest{Namespace: "lease", Acks: []*cairnv1.AlarmAck{{
		Object: "r", LeaseId: got[0].LeaseId, Result: &cairnv1.AlarmAck_Done{Done: true}}}})
	if err != nil || ack.Results[0].Status != cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_REARMED ||
		!ack.Results[0].Alarm.FireAt.AsTime().Equal(start.Add(time.Hour)) || ack.Results[0].Alarm.State != cairnv1.AlarmState_ALARM_STATE_PENDING {
		t.Fatalf("ack done of a repeating alarm: %v, %v", ack, err)
	}
}

// TestAlarmSubscribe: a worker holding a SubscribeAlarms stream open (on
// a follower) receives due alarms, never more than max_in_flight unacked
// at once, and acks them through AckAlarms.
func TestAlarmSubscribe(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	f := c.followers(t)[0]
	mustAlarmNamespace(t, f, "sub", nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	stream, err := f.alarms().SubscribeAlarms(ctx, &cairnv1.SubscribeAlarmsRequest{Namespace: "sub", Worker: "sw", MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || !first.Created {
		t.Fatalf("first message: %v, %v", first, err)
	}
	planned := spreadAlarms("s", 6, time.Now().Add(100*time.Millisecond), 200*time.Millisecond)
	mustSetAlarms(t, c.leader(t), "sub", planned)
	got := map[string]bool{}
	for len(got) < len(planned) {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d alarms: %v", len(got), err)
		}
		if len(msg.Alarms) > 2 {
			t.Fatalf("%d alarms in flight, max_in_flight is 2", len(msg.Alarms))
		}
		for _, a := range msg.Alarms {
			if time.Now().Before(a.FireAt.AsTime()) {
				t.Errorf("%s streamed before its fire_at", a.Object)
			}
			got[a.Object] = true
			if _, err := c.followers(t)[1].alarms().AckAlarms(ctx, &cairnv1.AckAlarmsRequest{Namespace: "sub", Acks: []*cairnv1.AlarmAck{{
				Object: a.Object, Name: a.Name, LeaseId: a.LeaseId, Result: &cairnv1.AlarmAck_Done{Done: true}}}}); err != nil {
				t.Fatalf("ack %s: %v", a.Object, err)
			}
		}
	}
	// A webhook namespace has no subscriptions.
	mustAlarmNamespace(t, f, "sub", &cairnv1.AlarmSettings{WebhookUrl: "http://127.0.0.1:9/", WebhookSecret: "s"})
	s2, err := f.alarms().SubscribeAlarms(ctx, &cairnv1.SubscribeAlarmsRequest{Namespace: "sub"})
	if err == nil {
		_, err = s2.Recv()
	}
	wantCode(t, err, codes.FailedPrecondition, "webhook")
}
