package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
)

// Webhook delivery: one POST per attempt, with a JSON body and a
// signature header (both documented in the README):
//
//	Cairn-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// A 2xx answer completes the attempt; any other status, a redirect, a
// transport error or the namespace's lease_ms passing fails it.

// SignatureHeader is the header that carries a webhook body's signature.
const SignatureHeader = "Cairn-Signature"

// webhookBody is what a webhook receives, field for field.
type webhookBody struct {
	Namespace string `json:"namespace"`
	Object    string `json:"object"`
	Alarm     string `json:"alarm"`
	// ScheduledTime is the alarm's fire_at, RFC 3339 (UTC, milliseconds).
	ScheduledTime string `json:"scheduled_time"`
	// Attempt is 1 for the first delivery, 2 for the first retry...
	Attempt uint32 `json:"attempt"`
	// Payload is base64 (encoding/json's []byte).
	Payload []byte `json:"payload"`
	// DeliveryID is the lease id of this delivery, unique per delivery.
	// An attempt re-sent after a leader change has a new one; (object,
	// alarm, scheduled_time, attempt) names what is delivered.
	DeliveryID string `json:"delivery_id"`
}

// signWebhook returns the Cairn-Signature value for body sent at t.
func signWebhook(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// newWebhookClient returns the client of webhook deliveries: no
// redirects (a 3xx is a failed attempt), keep-alive connections enough
// for the concurrency.
func newWebhookClient(concurrency int) *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          2 * concurrency,
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// postAlarm makes one webhook delivery of alarm a of namespace ns and
// returns nil when the receiver answered 2xx.
func postAlarm(ctx context.Context, client *http.Client, set fsm.AlarmSettings, ns string, a *raftcmdv1.StoredAlarm) error {
	r := a.GetRecord()
	payload := r.GetPayload()
	if payload == nil {
		payload = []byte{} // "" rather than null
	}
	body, err := json.Marshal(webhookBody{
		Namespace: ns, Object: a.Object, Alarm: a.Name,
		ScheduledTime: time.UnixMilli(r.GetFireAtMs()).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Attempt:       r.GetAttempt(), Payload: payload, DeliveryID: r.GetLeaseId(),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(set.LeaseMs)*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, set.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cairn-alarms")
	req.Header.Set(SignatureHeader, signWebhook(set.WebhookSecret, time.Now(), body))
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("no answer within %d ms (the namespace's lease_ms)", set.LeaseMs)
		}
		return err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(snippet))
	}
	return nil
}
