package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cairndb/cairn/client"
)

// The checks run after the final heal and restart, on what the workloads
// recorded and on the cluster's final state.

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
	res, path, err := checkLinearizable(r.h.snapshot(), end, r.faults, r.evidence, timeout)
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

// evidence returns a directory that outlives the test, made on first use,
// for what a failing run leaves to look at.
func (r *run) evidence() string {
	if r.evDir == "" {
		dir, err := os.MkdirTemp("", fmt.Sprintf("cairn-chaos-%s-seed%d-", r.cfg.name, r.cfg.seed))
		if err != nil {
			return os.TempDir()
		}
		r.evDir = dir
	}
	return r.evDir
}

// diagnose writes, for a cluster that did not recover, every member's
// view of the cluster and its log into the evidence directory, after
// making the members that were stuck dump their goroutines (SIGQUIT). It
// returns the directory.
func (r *run) diagnose(stuck *notReadyError) string {
	dir := r.evidence()
	var states []string
	for _, n := range r.c.members() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := n.admin.ClusterOf(ctx, 0)
		cancel()
		states = append(states, fmt.Sprintf("%s ready=%v status=%v err=%v", n.id, n.ready(), st, err))
		if stuck != nil && slices.Contains(stuck.ids, n.id) {
			n.quit()
		}
		if b, err := os.ReadFile(filepath.Join(n.dir, "node.log")); err == nil {
			_ = os.WriteFile(filepath.Join(dir, n.id+".log"), b, 0o644)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "states.txt"), []byte(strings.Join(states, "\n")+"\n"), 0o644)
	return dir
}

// restartStopped starts the members whose process is not running.
func (r *run) restartStopped() error {
	for _, n := range r.c.members() {
		n.mu.Lock()
		running := n.running
		n.mu.Unlock()
		if !running {
			if err := n.start(r.c.bin); err != nil {
				return err
			}
		}
	}
	return nil
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
