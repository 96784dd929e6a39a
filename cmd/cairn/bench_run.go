package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairndb/cairn/client"
	"google.golang.org/grpc/codes"
)

// benchRun is one run of `cairn bench`: the connections, the workers and
// the workload.
type benchRun struct {
	o        benchOptions
	cfg      client.Config
	setup    *client.Client // setup work (namespace, preload) over --endpoints, with retries
	targets  []string       // the addresses the workers load (gRPC, or REST with --rest)
	conns    []benchConn
	workers  []*benchWorker
	work     benchWorkload
	progress *benchProgress

	// measureStart is when the measured phase began (unix ns; 0 before).
	measureStart atomic.Int64
	// done and failed count the current phase's operations, for progress.
	done, failed atomic.Int64
}

// benchWorker is one client: a closed loop of operations (or an open
// one at its share of --rate). Only its goroutine touches it while a
// phase runs.
type benchWorker struct {
	id    int
	conn  benchConn
	rng   *rand.Rand
	value []byte
	// measure is set during the measured phase.
	measure bool
	seq     int
	// lat[kind] are the latencies of successful operations.
	lat        [2]histogram
	errs       map[string]int64
	overloaded int64
	// own names the key a txn worker compares-and-sets.
	ownObject, ownKey string
}

// benchOpKind tells reads from writes (reported apart for mixed).
type benchOpKind int

const (
	benchRead benchOpKind = iota
	benchWrite
)

var benchOpNames = [...]string{benchRead: "get", benchWrite: "put"}

// After a ResourceExhausted answer a client waits before its next
// operation (the cluster asked for less load): the server's retry hint, or
// benchOverloadPause without one, at most benchOverloadMaxPause. The
// refused operation itself is not retried.
const (
	benchOverloadPause    = 10 * time.Millisecond
	benchOverloadMaxPause = time.Second
)

// benchRetryAfter is the pause after a ResourceExhausted answer err.
func benchRetryAfter(err error) time.Duration {
	var ce *client.Error
	var re *restError
	hint := time.Duration(0)
	switch {
	case errors.As(err, &ce):
		hint = ce.RetryAfter
	case errors.As(err, &re):
		hint = re.retryAfter
	}
	if hint <= 0 {
		return benchOverloadPause
	}
	return min(hint, benchOverloadMaxPause)
}

// benchValueChars are what values are made of: safe in URLs and JSON
// strings as they are.
const benchValueChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func benchKey(i int) string    { return "k" + strconv.Itoa(i) }
func benchObject(i int) string { return "o" + strconv.Itoa(i) }

// pick returns a random key of the key space and its object.
func (w *benchWorker) pick(o *benchOptions) (object, key string) {
	i := w.rng.IntN(o.keys)
	return benchObject(i % o.objects), benchKey(i)
}

// connect finds the target nodes, makes sure the namespace exists, and
// opens the connections and the workers.
func (r *benchRun) connect(ctx context.Context) error {
	c, err := client.New(r.cfg)
	if err != nil {
		return err
	}
	r.setup = c
	cl, err := c.Cluster(ctx)
	if err != nil {
		return fmt.Errorf("reading the cluster's members: %w", err)
	}
	for _, m := range cl.Members {
		isLeader := m.Leader || m.Id == cl.LeaderId
		if r.o.target == "all" || (r.o.target == "leader") == isLeader {
			addr := m.GrpcAddr
			if r.o.rest {
				addr = m.HttpAddr
			}
			if addr == "" {
				return fmt.Errorf("member %s publishes no address to reach it by (--target %s)", m.Id, r.o.target)
			}
			r.targets = append(r.targets, addr)
		}
	}
	if len(r.targets) == 0 {
		return fmt.Errorf("--target %s: the cluster has no such member (leader %q, %d members)", r.o.target, cl.LeaderId, len(cl.Members))
	}
	if _, err := c.Namespace(ctx, r.o.namespace); errors.Is(err, client.ErrNotFound) {
		if _, err := c.PutNamespace(ctx, r.o.namespace, nil); err != nil {
			return fmt.Errorf("creating namespace %s: %w", r.o.namespace, err)
		}
	} else if err != nil {
		return fmt.Errorf("namespace %s: %w", r.o.namespace, err)
	}

	n := len(r.targets)
	if !r.o.rest && r.o.connections > 0 {
		n = r.o.connections
	}
	perConn := (r.o.clients + n - 1) / n
	for i := 0; i < n; i++ {
		ep := r.targets[i%len(r.targets)]
		if r.o.rest {
			r.conns = append(r.conns, newRESTConn(r.cfg.TLS, ep, r.o.namespace, r.cfg.Token, r.cfg.RequestTimeout, perConn+r.o.watchers))
			continue
		}
		g, err := newGRPCConn(r.cfg, ep, r.o.namespace)
		if err != nil {
			return err
		}
		r.conns = append(r.conns, g)
	}
	for i := 0; i < r.o.clients; i++ {
		w := &benchWorker{id: i, conn: r.conns[i%len(r.conns)], rng: rand.New(rand.NewPCG(uint64(i), 0x6361_6972_6e)),
			value: make([]byte, r.o.valueSize), errs: map[string]int64{}}
		for j := range w.value {
			w.value[j] = benchValueChars[w.rng.IntN(len(benchValueChars))]
		}
		r.workers = append(r.workers, w)
	}
	r.work = newBenchWorkload(r.o.workload)
	return nil
}

// runPhase runs the workers for d, or until ops operations were issued
// (ops > 0), or until ctx ends; measured phases record latencies and
// errors. It returns how long the phase took.
func (r *benchRun) runPhase(ctx context.Context, name string, d time.Duration, ops int64, measure bool) time.Duration {
	r.done.Store(0)
	r.failed.Store(0)
	var stop atomic.Bool
	var issued atomic.Int64
	start := time.Now()
	if measure {
		r.measureStart.Store(start.UnixNano())
	}
	var interval time.Duration // between one worker's operations, open loop
	if r.o.rate > 0 {
		interval = time.Duration(float64(len(r.workers)) / r.o.rate * float64(time.Second))
	}
	var wg sync.WaitGroup
	for _, w := range r.workers {
		w.measure = measure
		wg.Go(func() {
			next := start.Add(interval * time.Duration(w.id) / time.Duration(len(r.workers)))
			for !stop.Load() && ctx.Err() == nil {
				if ops > 0 && issued.Add(1) > ops {
					return
				}
				t0 := time.Now()
				if interval > 0 {
					if wait := next.Sub(t0); wait > 0 && !sleepCtx(ctx, wait) {
						return
					}
					t0 = next // latency counts from when the request was due
					next = next.Add(interval)
				}
				kind, err := r.work.op(ctx, r, w)
				lat := time.Since(t0)
				if err == nil {
					r.done.Add(1)
					if measure {
						w.lat[kind].record(lat)
					}
					continue
				}
				if ctx.Err() != nil {
					return // interrupted: the operation did not fail
				}
				r.failed.Add(1)
				code := benchErrorCode(err)
				if measure {
					w.errs[code]++
				}
				if code == codes.ResourceExhausted.String() {
					if measure {
						w.overloaded++
					}
					sleepCtx(ctx, benchRetryAfter(err))
				}
			}
		})
	}
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	var timeout <-chan time.Time
	if ops == 0 {
		timeout = time.After(d)
	}
	for {
		select {
		case <-finished:
			return time.Since(start)
		case <-timeout:
			stop.Store(true)
		case <-ticker.C:
			r.progress.show(name, time.Since(start), r.done.Load(), r.failed.Load())
		}
	}
}

// measure runs the measured phase and sums up the workers.
func (r *benchRun) measure(ctx context.Context) *benchResult {
	cpu0, pids0 := processCPU(), pidsCPU(r.o.cpuPIDs)
	elapsed := r.runPhase(ctx, r.o.workload, r.o.duration, r.o.ops, true)
	cpu, pids1 := processCPU()-cpu0, pidsCPU(r.o.cpuPIDs)
	res := &benchResult{
		Time: time.Unix(0, r.measureStart.Load()).UTC().Format(time.RFC3339), Tool: "cairn bench",
		Target: "cairn-grpc", Endpoints: strings.Join(r.targets, ","), Nodes: r.o.target, Mode: r.o.workload,
		Clients: r.o.clients, Conns: len(r.conns), ValueSize: r.o.valueSize, Keys: r.o.keys, Objects: r.o.objects,
		Rate: r.o.rate, WarmupS: r.o.warmup.Seconds(), DurationS: round3(elapsed.Seconds()),
		ErrorsByCode: map[string]int64{},
		ClientCPUS:   round3(cpu.Seconds()), ClientCPUPct: round3(100 * cpu.Seconds() / elapsed.Seconds()),
	}
	if r.o.rest {
		res.Target = "cairn-rest"
	}
	if len(r.o.cpuPIDs) > 0 {
		res.PIDCPUPct = map[string]float64{}
		var all time.Duration
		for pid, t := range pids1 {
			d := t - pids0[pid]
			all += d
			res.PIDCPUPct[strconv.Itoa(pid)] = round3(100 * d.Seconds() / elapsed.Seconds())
		}
		res.PIDCPUS = round3(all.Seconds())
	}
	switch r.o.workload {
	case "get", "mixed":
		res.ReadConsistency = r.o.consistency
	}
	var all histogram
	var byOp [2]histogram
	for _, w := range r.workers {
		for k := range w.lat {
			byOp[k].merge(&w.lat[k])
			all.merge(&w.lat[k])
		}
		for code, n := range w.errs {
			res.ErrorsByCode[code] += n
			res.Errors += n
		}
		res.Overloaded += w.overloaded
	}
	res.Ops = int64(all.count)
	res.OpsPerS = round3(float64(all.count) / elapsed.Seconds())
	res.latencySummary = all.summary()
	if r.o.workload == "mixed" {
		res.ByOp = map[string]latencySummary{}
		for k, name := range benchOpNames {
			res.ByOp[name] = byOp[k].summary()
		}
	}
	return res
}

func (r *benchRun) close() {
	if r.work != nil {
		r.work.stop()
	}
	for _, c := range r.conns {
		c.close()
	}
	if r.setup != nil {
		_ = r.setup.Close()
	}
}

// benchErrorCode names what went wrong for the error counts: the gRPC
// code (REST answers carry it too), or what happened on the way.
func benchErrorCode(err error) string {
	var ce *client.Error
	var re *restError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		return ce.Code.String()
	case errors.As(err, &re):
		if re.code != codes.Unknown {
			return re.code.String()
		}
		if re.status == 429 {
			return codes.ResourceExhausted.String()
		}
		return "HTTP " + strconv.Itoa(re.status)
	case errors.Is(err, errBenchCompareFailed):
		return "CompareFailed"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return codes.DeadlineExceeded.String()
	}
	return "Transport"
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// benchProgress is the one updating status line on a terminal's stderr;
// it writes nothing when stderr is not a terminal.
type benchProgress struct {
	w io.Writer

	mu    sync.Mutex // preload's goroutines report concurrently
	shown bool
}

func newBenchProgress(stderr io.Writer) *benchProgress {
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return &benchProgress{w: f}
		}
	}
	return &benchProgress{}
}

func (p *benchProgress) show(phase string, elapsed time.Duration, done, failed int64) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shown = true
	fmt.Fprintf(p.w, "\r\033[K%s  %5.1fs  %d ops  %.0f ops/s  %d errors", phase, elapsed.Seconds(), done,
		float64(done)/elapsed.Seconds(), failed)
}

func (p *benchProgress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
