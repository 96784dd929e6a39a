package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// benchWorkload is what the workers do. op is called concurrently, once
// per operation, by each worker's goroutine.
type benchWorkload interface {
	// prepare runs once before the warm-up.
	prepare(ctx context.Context, r *benchRun) error
	// op runs one operation as worker w and says whether it read or wrote.
	op(ctx context.Context, r *benchRun, w *benchWorker) (benchOpKind, error)
	// finish runs after the measured phase and adds what the workload
	// measured besides its operations (deliveries).
	finish(ctx context.Context, r *benchRun, res *benchResult)
	// stop releases what prepare started.
	stop()
}

func newBenchWorkload(name string) benchWorkload {
	switch name {
	case "txn":
		return &benchTxn{}
	case "alarm":
		return &benchAlarm{}
	case "watch":
		return &benchWatch{}
	}
	return &benchKV{}
}

// errBenchCompareFailed: a txn client's compare-and-set on its own key
// found another revision (nothing else writes that key).
var errBenchCompareFailed = errors.New("bench: compare-and-set on the client's own key failed")

// benchKV is put, get and mixed.
type benchKV struct{}

func (benchKV) prepare(ctx context.Context, r *benchRun) error {
	if r.o.preload && (r.o.workload == "get" || r.o.workload == "mixed") {
		return r.preload(ctx)
	}
	return nil
}

func (benchKV) op(ctx context.Context, r *benchRun, w *benchWorker) (benchOpKind, error) {
	object, key := w.pick(&r.o)
	if r.o.workload == "get" || (r.o.workload == "mixed" && w.rng.Float64() < r.o.readRatio) {
		_, err := w.conn.get(ctx, object, key, r.o.consistency == "serializable")
		return benchRead, err
	}
	return benchWrite, w.conn.put(ctx, object, key, w.value)
}

func (benchKV) finish(context.Context, *benchRun, *benchResult) {}
func (benchKV) stop()                                           {}

// preload writes every key of the key space once, through the setup
// client, in transactions of up to 128 puts that span objects (so that a
// key space over a million objects takes as few Raft entries as one over
// a single object). Values are stored as the workers store them: binary
// over gRPC, JSON strings over REST.
func (r *benchRun) preload(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	per := min(128, max(1, (512<<10)/r.o.valueSize))
	firsts := make(chan int)
	go func() {
		defer close(firsts)
		for i := 0; i < r.o.keys; i += per {
			select {
			case firsts <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	value := r.workers[0].value
	start := time.Now()
	var written atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(r.o.clients, 16) {
		wg.Go(func() {
			for first := range firsts {
				req := &cairnv1.TxnRequest{Namespace: r.o.namespace}
				for i := first; i < min(first+per, r.o.keys); i++ {
					put := &cairnv1.PutOp{Object: benchObject(i % r.o.objects), Key: benchKey(i)}
					if r.o.rest {
						put.Content = &cairnv1.PutOp_Value{Value: structpb.NewStringValue(string(value))}
					} else {
						put.Content = &cairnv1.PutOp_BinaryValue{BinaryValue: value}
					}
					req.Success = append(req.Success, &cairnv1.TxnOp{Op: &cairnv1.TxnOp_Put{Put: put}})
				}
				if _, err := r.setup.Txn(ctx, req); err != nil {
					once.Do(func() {
						firstErr = fmt.Errorf("preloading keys %d to %d: %w", first, first+len(req.Success)-1, err)
						cancel()
					})
					return
				}
				r.progress.show("preload", time.Since(start), written.Add(int64(len(req.Success))), 0)
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// benchTxn is compare-and-set: read the client's own key's revision, then
// a transaction that writes the key if its mod_revision is still that.
type benchTxn struct{}

func (benchTxn) prepare(ctx context.Context, r *benchRun) error {
	errs := make([]error, len(r.workers))
	var wg sync.WaitGroup
	for _, w := range r.workers {
		w.ownObject, w.ownKey = benchObject(w.id%r.o.objects), "cas"+strconv.Itoa(w.id)
		wg.Go(func() { errs[w.id] = w.conn.put(ctx, w.ownObject, w.ownKey, w.value) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("writing the txn clients' keys: %w", err)
	}
	return nil
}

func (benchTxn) op(ctx context.Context, _ *benchRun, w *benchWorker) (benchOpKind, error) {
	rev, err := w.conn.get(ctx, w.ownObject, w.ownKey, false)
	if err != nil {
		return benchWrite, err
	}
	ok, err := w.conn.casPut(ctx, w.ownObject, w.ownKey, rev, w.value)
	if err == nil && !ok {
		err = errBenchCompareFailed
	}
	return benchWrite, err
}

func (benchTxn) finish(context.Context, *benchRun, *benchResult) {}
func (benchTxn) stop()                                           {}

// benchAlarm sets alarms due --alarm-lead after now and receives their
// webhook deliveries. Alarms set while measuring are named m<client>-<n>,
// those of the warm-up w<client>-<n>: only the first are counted.
type benchAlarm struct {
	srv *http.Server

	mu          sync.Mutex
	delays      histogram
	redelivered uint64
}

func (a *benchAlarm) prepare(ctx context.Context, r *benchRun) error {
	ln, err := net.Listen("tcp", r.o.webhookListen)
	if err != nil {
		return fmt.Errorf("--webhook-listen: %w", err)
	}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()

	ns, err := r.setup.Namespace(ctx, r.o.namespace)
	if err != nil {
		return err
	}
	settings := &cairnv1.NamespaceSettings{}
	if ns.Settings != nil {
		settings = proto.Clone(ns.Settings).(*cairnv1.NamespaceSettings)
	}
	if settings.Alarms == nil {
		settings.Alarms = &cairnv1.AlarmSettings{}
	}
	var secret [16]byte
	_, _ = rand.Read(secret[:])
	settings.Alarms.WebhookUrl = "http://" + ln.Addr().String() + "/alarm"
	settings.Alarms.WebhookSecret = hex.EncodeToString(secret[:])
	if _, err := r.setup.PutNamespace(ctx, r.o.namespace, settings); err != nil {
		return fmt.Errorf("pointing namespace %s's alarms at the bench's webhook: %w", r.o.namespace, err)
	}
	return nil
}

// ServeHTTP receives one webhook delivery.
func (a *benchAlarm) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	now := time.Now()
	var body struct {
		Alarm         string    `json:"alarm"`
		ScheduledTime time.Time `json:"scheduled_time"`
		Attempt       uint32    `json:"attempt"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	if strings.HasPrefix(body.Alarm, "m") {
		a.mu.Lock()
		if body.Attempt > 1 {
			a.redelivered++
		} else {
			a.delays.record(now.Sub(body.ScheduledTime))
		}
		a.mu.Unlock()
	}
	rw.WriteHeader(http.StatusNoContent)
}

func (a *benchAlarm) op(ctx context.Context, r *benchRun, w *benchWorker) (benchOpKind, error) {
	object, _ := w.pick(&r.o)
	w.seq++
	prefix := "w"
	if w.measure {
		prefix = "m"
	}
	name := prefix + strconv.Itoa(w.id) + "-" + strconv.Itoa(w.seq)
	// Due times have millisecond precision: the webhook's scheduled_time
	// is then exactly the time set.
	fireAt := time.Now().Add(r.o.alarmLead).Truncate(time.Millisecond)
	return benchWrite, w.conn.setAlarm(ctx, object, name, fireAt)
}

// finish waits until every alarm set while measuring was delivered (or
// the lead plus 30 s passed).
func (a *benchAlarm) finish(ctx context.Context, r *benchRun, res *benchResult) {
	want := uint64(res.Ops)
	waitUntil(ctx, r.o.alarmLead+30*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.delays.count >= want
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	res.Delivery = &benchDelivery{Expected: want, Redelivered: a.redelivered, latencySummary: a.delays.summary()}
}

func (a *benchAlarm) stop() {
	if a.srv != nil {
		_ = a.srv.Close()
	}
}

// benchWatch: --watchers streams watch object o0 while the clients write
// its keys; each value starts with its send time (unix ns, 19 digits).
type benchWatch struct {
	cancel   context.CancelFunc
	watchers []*benchWatcher
}

// benchWatcher is one stream; its histogram is written by the stream's
// goroutine only, and read once done has been received from.
type benchWatcher struct {
	delays   histogram
	received atomic.Uint64
	done     <-chan error
}

// benchStampLen is the length of a value's send-time prefix.
const benchStampLen = 19

func (b *benchWatch) prepare(ctx context.Context, r *benchRun) error {
	ctx, b.cancel = context.WithCancel(ctx)
	for i := range r.o.watchers {
		wt := &benchWatcher{}
		done, err := r.conns[i%len(r.conns)].watch(ctx, benchObject(0), func(v []byte) {
			sent, ok := parseStamp(v)
			start := r.measureStart.Load()
			if !ok || start == 0 || sent < start {
				return // a warm-up write
			}
			wt.delays.record(time.Since(time.Unix(0, sent)))
			wt.received.Add(1)
		})
		if err != nil {
			return fmt.Errorf("opening watch %d: %w", i+1, err)
		}
		wt.done = done
		b.watchers = append(b.watchers, wt)
	}
	return nil
}

func (b *benchWatch) op(ctx context.Context, r *benchRun, w *benchWorker) (benchOpKind, error) {
	strconv.AppendInt(w.value[:0], time.Now().UnixNano(), 10) // the send time over the value's first bytes
	return benchWrite, w.conn.put(ctx, benchObject(0), benchKey(w.rng.IntN(r.o.keys)), w.value)
}

// finish waits until every watcher received every measured write (or 30
// s passed), then closes the streams.
func (b *benchWatch) finish(ctx context.Context, r *benchRun, res *benchResult) {
	want := uint64(res.Ops)
	waitUntil(ctx, 30*time.Second, func() bool {
		for _, wt := range b.watchers {
			if wt.received.Load() < want {
				return false
			}
		}
		return true
	})
	b.stop()
	var all histogram
	for _, wt := range b.watchers {
		<-wt.done
		all.merge(&wt.delays)
	}
	b.watchers = nil
	res.Delivery = &benchDelivery{Expected: want * uint64(r.o.watchers), latencySummary: all.summary()}
}

func (b *benchWatch) stop() {
	if b.cancel != nil {
		b.cancel()
	}
}

// parseStamp reads the send time at the start of a watch value.
func parseStamp(v []byte) (int64, bool) {
	if len(v) < benchStampLen {
		return 0, false
	}
	var n int64
	for _, c := range v[:benchStampLen] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// waitUntil polls cond until it holds, timeout passes or ctx ends.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() && time.Now().Before(deadline) && sleepCtx(ctx, 10*time.Millisecond) {
	}
}
