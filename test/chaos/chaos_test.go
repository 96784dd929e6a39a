package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
)

// cairnBin is the real binary, built once by TestMain.
var cairnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cairnBin = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", cairnBin, "../../cmd/cairn")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cairn:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// runConfig is one run: a cluster of nodes under a schedule of faults.
type runConfig struct {
	name     string
	seed     int64
	nodes    int
	duration time.Duration // 0: just one fault of each kind
	kinds    []faultKind
	subnet   int
}

// TestChaos runs the cluster under faults and checks what its clients
// saw. By default (short mode, run by go test ./...): a three-node and a
// five-node run that between them inject every kind of fault once. With
// CAIRN_CHAOS_DURATION set: one soak of that length (see doc.go).
func TestChaos(t *testing.T) {
	seed := time.Now().UnixNano() % 1_000_000
	if s := os.Getenv("CAIRN_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("CAIRN_CHAOS_SEED=%q: %v", s, err)
		}
	}
	kinds, err := parseFaultKinds(os.Getenv("CAIRN_CHAOS_FAULTS"))
	if err != nil {
		t.Fatalf("CAIRN_CHAOS_FAULTS: %v", err)
	}
	var runs []runConfig
	if d := os.Getenv("CAIRN_CHAOS_DURATION"); d != "" {
		duration, err := time.ParseDuration(d)
		if err != nil {
			t.Fatalf("CAIRN_CHAOS_DURATION=%q: %v", d, err)
		}
		nodes := 5
		if s := os.Getenv("CAIRN_CHAOS_NODES"); s != "" {
			if nodes, err = strconv.Atoi(s); err != nil || nodes < 3 {
				t.Fatalf("CAIRN_CHAOS_NODES=%q: want 3 or more", s)
			}
		}
		runs = append(runs, runConfig{name: "long", seed: seed, nodes: nodes, duration: duration, kinds: kinds, subnet: 30})
	} else {
		three := []faultKind{killFollower, killLeader, pauseNode, isolateLeader, oneWayLoss, crashAll, snapshotCatchUp}
		five := []faultKind{killRandom, splitMinority, addLatency, transferLeader, replaceMember}
		runs = append(runs,
			runConfig{name: "3-nodes", seed: seed, nodes: 3, kinds: only(three, kinds), subnet: 31},
			runConfig{name: "5-nodes", seed: seed + 1, nodes: 5, kinds: only(five, kinds), subnet: 32})
	}
	for _, rc := range runs {
		if len(rc.kinds) == 0 {
			continue
		}
		t.Run(rc.name, func(t *testing.T) {
			t.Parallel()
			runChaos(t, rc)
		})
	}
}

// only keeps the kinds of ks that are in allowed.
func only(ks, allowed []faultKind) []faultKind {
	var out []faultKind
	for _, k := range ks {
		for _, a := range allowed {
			if k == a {
				out = append(out, k)
				break
			}
		}
	}
	return out
}

// run is the state of one run.
type run struct {
	t       *testing.T
	cfg     runConfig
	c       *cluster
	h       *history
	alarms  *alarmLog // pull delivery
	hooks   *alarmLog // webhook delivery
	hook    *hookReceiver
	faults  []faultRecord
	summary []string
}

func runChaos(t *testing.T, cfg runConfig) {
	sched := schedule(cfg.seed, cfg.kinds, cfg.duration)
	t.Logf("seed %d: %d faults scheduled", cfg.seed, len(sched))
	c, err := startCluster(t, cairnBin, cfg.nodes, cfg.subnet)
	if err != nil {
		t.Fatalf("starting the cluster: %v", err)
	}
	r := &run{t: t, cfg: cfg, c: c, h: &history{start: time.Now()}, alarms: newAlarmLog(alarmNamespace), hooks: newAlarmLog(hookNamespace)}
	r.hooks.leased = true
	if r.hook, err = startHookReceiver(cfg.seed, r.hooks); err != nil {
		t.Fatal(err)
	}
	defer r.hook.close()
	defer func() {
		if t.Failed() {
			for _, n := range c.members() {
				t.Logf("last lines of %s's log:\n%s", n.id, n.tail(30))
			}
		}
		c.stop()
	}()
	if err := r.setup(); err != nil {
		t.Fatal(err)
	}

	// The workload runs until the faults are over and the cluster has
	// been healed and restarted.
	work, stopWork := context.WithCancel(context.Background())
	resolve, stopResolving := context.WithCancel(context.Background())
	defer stopResolving()
	var clients sync.WaitGroup
	for i := 0; i < 8; i++ {
		k := newKVClient(i, cfg.seed, c, r.h)
		clients.Add(1)
		go func() { defer clients.Done(); k.run(work, resolve) }()
	}
	alarmSet, stopSetting := context.WithCancel(context.Background())
	claimers, stopClaiming := context.WithCancel(context.Background())
	defer stopClaiming()
	var background sync.WaitGroup
	background.Add(5)
	go func() { defer background.Done(); ballast(alarmSet, c) }()
	go func() { defer background.Done(); setAlarms(alarmSet, cfg.seed, c, r.alarms) }()
	go func() { defer background.Done(); setAlarms(alarmSet, cfg.seed+1, c, r.hooks) }()
	for i := 0; i < 2; i++ {
		go func() {
			defer background.Done()
			claimAlarms(claimers, fmt.Sprintf("worker-%d", i), cfg.seed+int64(i), c, r.alarms)
		}()
	}
	watching, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	watchers := []*watcher{{start: r.h.start}, {start: r.h.start}}
	for _, w := range watchers {
		background.Add(1)
		go func() { defer background.Done(); w.watch(watching, c) }()
	}

	start := time.Now()
	for i, f := range sched {
		if cfg.duration > 0 && i >= len(cfg.kinds) && time.Since(start) > cfg.duration {
			break // recoveries took longer than the schedule allowed for
		}
		if wait := time.Until(start.Add(f.at)); wait > 0 {
			time.Sleep(wait) // the schedule says when the next fault starts
		}
		rec := faultRecord{kind: f.kind, start: r.h.now()}
		for _, n := range c.members() {
			if f.jitter > 0 {
				c.net.Delay(n.id, f.jitter)
			}
		}
		detail, err := r.inject(f)
		c.net.Heal()
		if f.jitter > 0 {
			detail += fmt.Sprintf(", with %s on every link", 2*f.jitter)
		}
		rec.detail, rec.end = detail, r.h.now()
		r.faults = append(r.faults, rec)
		if err != nil {
			t.Errorf("fault %s: %v", f.kind, err)
		}
		t.Logf("%6.1fs %s: %s", time.Since(start).Seconds(), f.kind, detail)
		if err := c.waitHealthy(60 * time.Second); err != nil {
			t.Fatalf("after %s (%s) the cluster did not recover: %v", f.kind, detail, err)
		}
	}
	if wait := time.Until(start.Add(cfg.duration)); wait > 0 {
		time.Sleep(wait)
	}

	// Final heal and restart: every fault undone, every node killed and
	// started again, so that durability is checked against disk.
	c.net.Heal()
	for _, n := range c.members() {
		n.resume()
	}
	if err := c.restartAll(); err != nil {
		t.Fatal(err)
	}
	if err := c.waitHealthy(60 * time.Second); err != nil {
		t.Fatalf("after the final restart: %v", err)
	}
	stopSetting()
	stopWork()
	waitGroupOr(&clients, 30*time.Second, stopResolving)
	end := r.h.now()

	anomalies, lost := r.check(watchers, end, &background, stopClaiming, stopWatching)
	line := fmt.Sprintf("chaos %s: seed=%d nodes=%d %s faults=%s anomalies=%d lost=%d %s",
		cfg.name, cfg.seed, cfg.nodes, r.opsSummary(), r.faultSummary(), anomalies, lost, strings.Join(r.summary, " "))
	fmt.Println(line)
	t.Log(line)
	if anomalies > 0 || lost > 0 {
		t.Errorf("%d anomalies, %d acknowledged writes lost (seed %d; rerun with CAIRN_CHAOS_SEED=%d)", anomalies, lost, cfg.seed, cfg.seed)
	}
}

// setup creates the namespaces of the workloads.
func (r *run) setup() error {
	cl := r.c.adminOf(r.c.members())
	defer cl.Close()
	hooks := &cairnv1.NamespaceSettings{Alarms: &cairnv1.AlarmSettings{WebhookUrl: r.hook.url, WebhookSecret: hookSecret, RetryInitialMs: 500}}
	for ns, settings := range map[string]*cairnv1.NamespaceSettings{kvNamespace: nil, alarmNamespace: nil, hookNamespace: hooks} {
		if err := retry(30*time.Second, func(ctx context.Context) error {
			_, err := cl.PutNamespace(ctx, ns, settings)
			return err
		}); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	return nil
}

// waitGroupOr waits for wg; after timeout it calls giveUp and waits on.
func waitGroupOr(wg *sync.WaitGroup, timeout time.Duration, giveUp func()) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		giveUp()
		<-done
	}
}

// check runs every checker and returns the number of anomalies and of
// acknowledged writes lost; it logs each finding.
func (r *run) check(watchers []*watcher, end int64, background *sync.WaitGroup, stopClaiming, stopWatching func()) (anomalies, lost int) {
	t := r.t
	finalClient := 100
	cl := r.c.adminOf(r.c.members())
	defer cl.Close()

	// Durability: read every key, linearizably, after the final restart.
	final := map[string]kvOp{}
	for i := 0; i < kvKeys; i++ {
		k := &kvClient{id: finalClient + i}
		op := kvOp{client: k.id, in: kvInput{op: opGet, key: keyName(i)}, call: r.h.now()}
		var err error
		if err := retry(30*time.Second, func(context.Context) error { op.out, err = k.do(cl, op.in, ""); return err }); err != nil {
			t.Errorf("final read of %s: %v", keyName(i), err)
			anomalies++
			continue
		}
		op.ret = r.h.now()
		r.h.add(op)
		final[op.in.key] = op
	}
	ops := r.h.snapshot()
	for _, p := range checkRevisions(ops) {
		t.Errorf("revisions: %s", p)
		anomalies++
	}
	for _, l := range checkDurability(ops, final) {
		t.Errorf("acknowledged write lost: %s", l)
		lost++
	}

	// Watches: a last write that every watcher must reach.
	var sentinel uint64
	sentinelOp := kvOp{client: finalClient + kvKeys, in: kvInput{op: opPut, key: "end", value: "end"}, call: r.h.now()}
	if err := retry(30*time.Second, func(ctx context.Context) error {
		res, err := cl.Put(ctx, kvNamespace, kvObject, "end", []byte("end"), client.WithRequestID("chaos-end"))
		sentinel = res.Revision
		return err
	}); err != nil {
		t.Errorf("the last write: %v", err)
		anomalies++
	}
	sentinelOp.out, sentinelOp.ret = kvOutput{rev: sentinel}, r.h.now()
	if err := retry(60*time.Second, func(context.Context) error {
		for i, w := range watchers {
			if w.rev() < sentinel {
				return fmt.Errorf("watcher %d at revision %d, the last write is %d", i, w.rev(), sentinel)
			}
		}
		return nil
	}); err != nil {
		t.Errorf("watches: %v", err)
		anomalies++
	}
	stopWatching()
	byRev, issued := committedWrites(append(ops, sentinelOp))
	events, restarts := 0, 0
	for i, w := range watchers {
		for _, p := range w.check(byRev, issued) {
			t.Errorf("watcher %d: %s", i, p)
			anomalies++
		}
		for _, s := range w.segments {
			events += len(s.events)
		}
		restarts += w.restarts
		for _, e := range w.errors {
			t.Logf("watcher %d restarted at %s", i, e)
		}
	}
	for _, p := range checkAppliedOnce(watchers) {
		t.Errorf("exactly-once: %s", p)
		anomalies++
	}
	r.summary = append(r.summary, fmt.Sprintf("watch-events=%d watch-restarts=%d", events, restarts))

	// Alarms: every alarm set and not deleted is delivered.
	if err := retry(90*time.Second, func(context.Context) error {
		if n := r.alarms.pending() + r.hooks.pending(); n > 0 {
			return fmt.Errorf("%d alarms not delivered", n)
		}
		return nil
	}); err != nil {
		t.Logf("alarms: %v", err)
	}
	stopClaiming()
	background.Wait()
	for _, l := range []*alarmLog{r.alarms, r.hooks} {
		af := l.check()
		for _, a := range af.lost {
			t.Errorf("%s: alarm lost: %s never delivered", l.ns, a)
		}
		for _, a := range af.early {
			t.Errorf("%s: alarm delivered early: %s", l.ns, a)
		}
		for _, a := range af.wrong {
			t.Errorf("%s: alarm delivered wrong: %s", l.ns, a)
		}
		for _, a := range af.afterDelete {
			t.Errorf("%s: alarm delivered after its delete: %s", l.ns, a)
		}
		if af.unknownDeliveries > 0 {
			t.Errorf("%s: %d deliveries of alarms never set", l.ns, af.unknownDeliveries)
		}
		anomalies += len(af.lost) + len(af.early) + len(af.afterDelete) + len(af.wrong) + af.unknownDeliveries
		r.summary = append(r.summary, fmt.Sprintf("%s=%d delivered=%d redelivered=%d failed=%d", map[bool]string{false: "pull-alarms", true: "webhook-alarms"}[l.leased],
			af.set, af.delivered, af.redelivered, af.dropped))
	}
	if r.hook.badSignatures > 0 {
		t.Errorf("%d webhook deliveries with a bad signature", r.hook.badSignatures)
		anomalies += r.hook.badSignatures
	}

	// Replicas: every member reaches the same state.
	if err := r.checkConverged(cl); err != nil {
		t.Errorf("replicas: %v", err)
		anomalies++
	}

	// Linearizability of the key/value history.
	timeout := time.Minute
	if r.cfg.duration > 0 {
		timeout = 10 * time.Minute
	}
	res, path, err := checkLinearizable(r.h.snapshot(), end, r.faults, r.evidenceDir(), timeout)
	switch {
	case err != nil:
		t.Errorf("linearizability: %v", err)
		anomalies++
	case res == porcupine.Illegal:
		t.Errorf("the key/value history is not linearizable: see %s", path)
		anomalies++
	case res == porcupine.Unknown:
		t.Logf("linearizability: porcupine gave up after %s", timeout)
	}
	r.summary = append(r.summary, "linearizable="+string(res))
	return anomalies, lost
}

// evidenceDir is a directory that outlives the test, for the
// visualization of a failing history.
func (r *run) evidenceDir() string {
	dir, err := os.MkdirTemp("", fmt.Sprintf("cairn-chaos-%s-seed%d-", r.cfg.name, r.cfg.seed))
	if err != nil {
		return os.TempDir()
	}
	return dir
}

// checkDurability checks that every acknowledged write survived the
// final restart: a key's final state is at least as new as the last
// acknowledged write to it. It returns the keys that lost one, and how.
func checkDurability(ops []kvOp, final map[string]kvOp) []string {
	type lastWrite struct {
		rev     uint64
		deleted bool
		value   string
	}
	last := map[string]lastWrite{}
	unknownDelete := map[string]bool{}
	for _, op := range ops {
		if op.out.unknown {
			if op.in.op == opDelete {
				unknownDelete[op.in.key] = true
			}
			continue
		}
		var w lastWrite
		switch {
		case op.in.op == opPut || (op.in.op == opCAS && op.out.succeeded):
			w = lastWrite{rev: op.out.rev, value: op.in.value}
		case op.in.op == opDelete && op.out.deleted:
			w = lastWrite{rev: op.out.rev, deleted: true}
		default:
			continue
		}
		if w.rev > last[op.in.key].rev {
			last[op.in.key] = w
		}
	}
	var lost []string
	for key, w := range last {
		f, ok := final[key]
		if !ok {
			continue // the final read failed, counted already
		}
		var why string
		switch {
		case w.deleted && f.out.found && f.out.rev < w.rev:
			why = fmt.Sprintf("deleted at %d, but holds %s@%d", w.rev, f.out.value, f.out.rev)
		case !w.deleted && f.out.found && (f.out.rev < w.rev || (f.out.rev == w.rev && f.out.value != w.value)):
			why = fmt.Sprintf("%s written at %d, but holds %s@%d", w.value, w.rev, f.out.value, f.out.rev)
		case !w.deleted && !f.out.found && !unknownDelete[key]:
			why = fmt.Sprintf("%s written at %d, but the key is gone", w.value, w.rev)
		default:
			continue
		}
		lost = append(lost, key+": "+why)
	}
	sort.Strings(lost)
	return lost
}

// checkConverged polls until every member reports the same applied index
// and then compares their state hashes.
func (r *run) checkConverged(cl *client.Client) error {
	ms := r.c.members()
	return retry(30*time.Second, func(ctx context.Context) error {
		hashes := map[uint64]map[string][]string{}
		for i, n := range ms {
			h, applied, err := cl.StateHashOf(ctx, i)
			if err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
			if hashes[applied] == nil {
				hashes[applied] = map[string][]string{}
			}
			hashes[applied][fmt.Sprintf("%x", h)] = append(hashes[applied][fmt.Sprintf("%x", h)], n.id)
		}
		if len(hashes) > 1 {
			return fmt.Errorf("members at different applied indexes: %v", hashes)
		}
		for applied, byHash := range hashes {
			if len(byHash) > 1 {
				r.t.Errorf("members diverged at applied index %d: %v", applied, byHash)
			}
		}
		return nil
	})
}

// opsSummary counts the operations by kind and outcome.
func (r *run) opsSummary() string {
	counts := map[opKind]int{}
	unknown := 0
	var slowest time.Duration
	ops := r.h.snapshot()
	for _, op := range ops {
		counts[op.in.op]++
		if op.out.unknown {
			unknown++
		} else {
			slowest = max(slowest, time.Duration(op.ret-op.call))
		}
	}
	return fmt.Sprintf("ops=%d (get=%d put=%d delete=%d cas=%d unknown=%d slowest=%s)", len(ops), counts[opGet], counts[opPut], counts[opDelete], counts[opCAS], unknown, slowest.Round(100*time.Millisecond))
}

// faultSummary counts the faults injected, by kind.
func (r *run) faultSummary() string {
	counts := map[string]int{}
	for _, f := range r.faults {
		counts[f.kind.String()]++
	}
	var parts []string
	for k := faultKind(0); k < numFaultKinds; k++ {
		if n := counts[k.String()]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", k, n))
		}
	}
	return fmt.Sprintf("%d[%s]", len(r.faults), strings.Join(parts, ","))
}
