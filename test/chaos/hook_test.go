package chaos

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

const hookSecret = "chaos-webhook-secret"

// hookReceiver is the webhook endpoint of the webhook namespace: it checks
// each delivery's signature, records it, and fails one in ten (HTTP 500),
// which the leader must retry.
type hookReceiver struct {
	log *alarmLog
	srv *http.Server
	url string

	mu            sync.Mutex
	rng           *rand.Rand
	badSignatures int
}

func startHookReceiver(seed int64, log *alarmLog) (*hookReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hookReceiver{log: log, rng: rand.New(rand.NewSource(seed ^ 0x400c)), url: "http://" + ln.Addr().String() + "/alarms"}
	h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *hookReceiver) close() { _ = h.srv.Close() }

// validSignature checks a Cairn-Signature header,
// t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
func validSignature(header string, body []byte) bool {
	ts, mac, ok := strings.Cut(header, ",v1=")
	if !ok || !strings.HasPrefix(ts, "t=") {
		return false
	}
	m := hmac.New(sha256.New, []byte(hookSecret))
	m.Write([]byte(strings.TrimPrefix(ts, "t=") + "."))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	return hmac.Equal([]byte(mac), []byte(want))
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var d struct {
		Object        string    `json:"object"`
		Alarm         string    `json:"alarm"`
		ScheduledTime time.Time `json:"scheduled_time"`
		Payload       []byte    `json:"payload"`
	}
	h.mu.Lock()
	fail := h.rng.Intn(10) == 0
	if !validSignature(r.Header.Get("Cairn-Signature"), body) || json.Unmarshal(body, &d) != nil {
		h.badSignatures++
		h.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	h.mu.Unlock()
	h.log.mu.Lock()
	rec := h.log.alarms[d.Object+"/"+d.Alarm]
	if rec == nil {
		h.log.unknown++
	} else {
		rec.claims = append(rec.claims, claim{sent: now, answered: now, fireAt: d.ScheduledTime, payload: string(d.Payload)})
		if fail {
			rec.dropped++
		}
	}
	h.log.mu.Unlock()
	if fail {
		http.Error(w, "chaos: failing this delivery", http.StatusInternalServerError)
	}
}
