package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
)

// The leader's alarm scheduler. Every node runs runAlarmScheduler; it
// acts only while its node leads, in a "stint" per term:
//
//  1. catch up: a read index makes sure the state holds everything
//     committed before this term;
//  2. take over: leases of webhook deliveries that earlier leaders held
//     ("leader:<node>:<term>", not this stint's) are requeued at once, so
//     due alarms fire right after an election instead of after their
//     leases run out;
//  3. every AlarmPollInterval, over the namespaces in round-robin order:
//     leases that expired (a pull worker that never acked) become failed
//     attempts (ack EXPIRE), and in webhook namespaces due alarms are
//     leased to this stint (BeginDelivery, up to the free delivery slots
//     of the namespace and of the node) and POSTed, each by its own
//     goroutine; their outcomes are acked in batches.
//
// Every state change is a log entry with a request id of the stint, so a
// retried proposal applies once. Nothing is kept across stints: a new
// leader learns everything from the state.

const (
	// leaderPollInterval is how often a node checks whether it leads.
	leaderPollInterval = 25 * time.Millisecond
	// internalRequestPrefix starts the request ids of the server's own
	// commands; internalRequestRetention is their window (retries of them
	// happen within seconds).
	internalRequestPrefix    = "cairn:"
	internalRequestRetention = time.Minute
	// alarmPassLimit bounds the alarms of one namespace one pass reads.
	alarmPassLimit = 256
	// ackBatchMax and ackFlushInterval batch acks into log entries.
	ackBatchMax      = 256
	ackFlushInterval = 5 * time.Millisecond
	// takeoverLimit bounds the leases a new leader reads per namespace.
	takeoverLimit = 100_000
)

// runAlarmScheduler runs a stint while this node leads, until ctx ends.
func (s *Server) runAlarmScheduler(ctx context.Context) {
	poll := time.NewTicker(leaderPollInterval)
	defer poll.Stop()
	var st *alarmStint
	defer func() {
		if st != nil {
			st.stop()
		}
	}()
	for {
		if s.node.IsLeader() {
			term := s.node.Status().Term
			if st != nil && st.term != term {
				st.stop()
				st = nil
			}
			if st == nil {
				st = s.startAlarmStint(ctx, term)
			}
		} else if st != nil {
			st.stop()
			st = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
	}
}

// alarmID names one alarm.
type alarmID struct{ ns, object, name string }

// stintAck is an ack on its way to the log.
type stintAck struct {
	id  alarmID
	ack *raftcmdv1.AlarmAck
}

// alarmStint is the scheduler of one term of leadership.
type alarmStint struct {
	s      *Server
	term   uint64
	holder string
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	seq    atomic.Uint64
	acks   chan stintAck

	mu         sync.Mutex
	busy       map[alarmID]bool // leased by this stint, or with an ack on its way
	deliveries int              // webhook calls in flight (and being begun)
	perNS      map[string]int   // ... by namespace
	rr         int              // round-robin start of the next pass
}

func (s *Server) startAlarmStint(parent context.Context, term uint64) *alarmStint {
	ctx, cancel := context.WithCancel(parent)
	st := &alarmStint{
		s: s, term: term, holder: fmt.Sprintf("%s%s:%d", leaderHolderPrefix, s.node.ID(), term),
		ctx: ctx, cancel: cancel, acks: make(chan stintAck, 4*ackBatchMax),
		busy: map[alarmID]bool{}, perNS: map[string]int{},
	}
	st.wg.Add(2)
	go st.run()
	go st.ackLoop()
	return st
}

// stop ends the stint and waits for its goroutines; deliveries in flight
// are cut (the next leader requeues them).
func (st *alarmStint) stop() {
	st.cancel()
	st.wg.Wait()
}

func (st *alarmStint) run() {
	defer st.wg.Done()
	if !st.catchUp() {
		return
	}
	st.takeOver()
	tick := time.NewTicker(st.s.cfg.AlarmPollInterval)
	defer tick.Stop()
	for {
		st.pass()
		select {
		case <-st.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// catchUp waits until this node has applied everything committed before
// its term (a read index), so the state it schedules from is current.
func (st *alarmStint) catchUp() bool {
	for {
		idx, err := st.s.node.ReadIndex(st.ctx)
		if err == nil && st.s.node.WaitApplied(st.ctx, idx) == nil {
			return true
		}
		if !sleepCtx(st.ctx, pollInterval) {
			return false
		}
	}
}

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

// takeOver requeues the webhook leases of earlier leaders.
func (st *alarmStint) takeOver() {
	nss, err := st.s.state.Namespaces()
	if err != nil {
		return
	}
	for _, ns := range nss {
		if ns.GetAlarms().GetDelivering() == 0 {
			continue
		}
		leased, err := st.s.state.LeasedAlarms(ns.Name, takeoverLimit)
		if err != nil {
			continue
		}
		var acks []*raftcmdv1.AlarmAck
		for _, a := range leased {
			if h := a.Record.GetHolder(); strings.HasPrefix(h, leaderHolderPrefix) && h != st.holder {
				acks = append(acks, &raftcmdv1.AlarmAck{Object: a.Object, Name: a.Name, LeaseId: a.Record.LeaseId, Kind: raftcmdv1.AckKind_ACK_KIND_REQUEUE})
			}
		}
		for len(acks) > 0 {
			n := min(len(acks), fsm.MaxAlarmRefs)
			if res, err := st.propose(&raftcmdv1.Command{Op: &raftcmdv1.Command_AckAlarms{AckAlarms: &raftcmdv1.AckAlarms{Namespace: ns.Name, Acks: acks[:n]}}}); err == nil {
				st.countOutcomes(res)
			} else if !errors.Is(err, fsm.ErrStaleAck) {
				st.s.log.Warn("alarms: requeueing an earlier leader's deliveries failed", "namespace", ns.Name, "err", err)
			}
			acks = acks[n:]
		}
	}
}

// pass looks at every namespace once, starting one further each pass.
func (st *alarmStint) pass() {
	nss, err := st.s.state.PollNamespaces()
	if err != nil || len(nss) == 0 {
		return
	}
	start := st.rr % len(nss)
	st.rr++
	now := time.Now().UnixMilli()
	for i := range nss {
		if st.ctx.Err() != nil {
			return
		}
		ns := nss[(start+i)%len(nss)]
		if c := ns.GetAlarms(); c.GetPending()+c.GetDelivering() == 0 {
			continue
		}
		pending, expired, err := st.s.state.DueAlarms(ns.Name, now, alarmPassLimit)
		if err != nil {
			continue
		}
		st.expire(ns.Name, expired)
		if set := fsm.EffectiveAlarmSettings(ns.Settings); set.Webhook() && len(pending) > 0 {
			st.begin(ns.Name, set, pending)
		}
	}
}

// expire turns leases that ran out (and that this stint is not
// delivering) into failed attempts.
func (st *alarmStint) expire(ns string, expired []*raftcmdv1.StoredAlarm) {
	for _, a := range expired {
		id := alarmID{ns, a.Object, a.Name}
		st.mu.Lock()
		busy := st.busy[id]
		st.busy[id] = true
		st.mu.Unlock()
		if busy {
			continue
		}
		st.queueAck(stintAck{id: id, ack: &raftcmdv1.AlarmAck{
			Object: a.Object, Name: a.Name, LeaseId: a.Record.LeaseId, Kind: raftcmdv1.AckKind_ACK_KIND_EXPIRE,
		}})
	}
}

// begin leases due alarms of a webhook namespace to this stint, as many
// as there are free slots, and starts their deliveries.
func (st *alarmStint) begin(ns string, set fsm.AlarmSettings, due []*raftcmdv1.StoredAlarm) {
	st.mu.Lock()
	free := min(st.s.cfg.AlarmConcurrency-st.deliveries, st.s.cfg.AlarmNamespaceConcurrency-st.perNS[ns])
	var refs []*raftcmdv1.AlarmRef
	for _, a := range due {
		if len(refs) >= free {
			break
		}
		id := alarmID{ns, a.Object, a.Name}
		if st.busy[id] {
			continue
		}
		st.busy[id] = true
		refs = append(refs, &raftcmdv1.AlarmRef{Object: a.Object, Name: a.Name})
	}
	st.deliveries += len(refs)
	st.perNS[ns] += len(refs)
	st.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	res, err := st.propose(&raftcmdv1.Command{Op: &raftcmdv1.Command_BeginDelivery{BeginDelivery: &raftcmdv1.BeginDelivery{
		Namespace: ns, Alarms: refs, LeaseMs: set.LeaseMs, Holder: st.holder,
	}}})
	if err != nil && st.ctx.Err() == nil {
		st.s.log.Warn("alarms: beginning deliveries failed", "namespace", ns, "alarms", len(refs), "err", err)
	}
	begun := map[alarmID]bool{}
	for _, a := range res.GetAlarms().GetAlarms() {
		id := alarmID{ns, a.Object, a.Name}
		begun[id] = true
		st.wg.Add(1)
		go st.deliver(id, set, a)
	}
	for _, ref := range refs {
		if id := (alarmID{ns, ref.Object, ref.Name}); !begun[id] {
			st.release(id, true)
		}
	}
}

// deliver makes one webhook delivery and queues its ack.
func (st *alarmStint) deliver(id alarmID, set fsm.AlarmSettings, begun *raftcmdv1.StoredAlarm) {
	defer st.wg.Done()
	lease := begun.Record.LeaseId
	// The payload, and a check that the lease is still this one (the
	// alarm may have been set again or deleted since it was leased).
	cur, err := st.s.state.Alarm(id.ns, id.object, id.name)
	if err != nil || cur.Record.GetLeaseId() != lease {
		st.release(id, true)
		return
	}
	due := cur.Record.NextDueMs
	if wait := time.Until(time.UnixMilli(due)); wait > 0 && !sleepCtx(st.ctx, wait) { // never early, even if the clock stepped back
		st.release(id, true)
		return
	}
	st.s.alarmMetrics.observeDelay(time.Now(), due)
	err = postAlarm(st.ctx, st.s.alarmClient, set, id.ns, cur)
	// The slot bounds webhook calls: it is free once the call is done,
	// while the alarm stays busy until its ack is applied.
	st.freeSlot(id.ns)
	if st.ctx.Err() != nil {
		st.release(id, false) // leadership lost: the next leader requeues it
		return
	}
	ack := &raftcmdv1.AlarmAck{Object: id.object, Name: id.name, LeaseId: lease, Kind: raftcmdv1.AckKind_ACK_KIND_DONE}
	if err != nil {
		ack.Kind, ack.Error = raftcmdv1.AckKind_ACK_KIND_RETRY, truncate(err.Error(), fsm.MaxAlarmErrorBytes)
		st.s.alarmMetrics.attempt("failed")
	} else {
		st.s.alarmMetrics.attempt("delivered")
	}
	st.queueAck(stintAck{id: id, ack: ack})
}

func (st *alarmStint) queueAck(a stintAck) {
	select {
	case st.acks <- a:
	case <-st.ctx.Done():
		st.release(a.id, false)
	}
}

// release forgets an alarm this stint held, and frees its delivery slot
// when it still holds one.
func (st *alarmStint) release(id alarmID, slot bool) {
	st.mu.Lock()
	delete(st.busy, id)
	st.mu.Unlock()
	if slot {
		st.freeSlot(id.ns)
	}
}

func (st *alarmStint) freeSlot(ns string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.deliveries--
	if st.perNS[ns]--; st.perNS[ns] <= 0 {
		delete(st.perNS, ns)
	}
}

// ackLoop writes queued acks to the log in batches, per namespace.
func (st *alarmStint) ackLoop() {
	defer st.wg.Done()
	tick := time.NewTicker(ackFlushInterval)
	defer tick.Stop()
	var batch []stintAck
	for {
		select {
		case <-st.ctx.Done():
			for _, a := range batch {
				st.release(a.id, false)
			}
			return
		case a := <-st.acks:
			if batch = append(batch, a); len(batch) < ackBatchMax {
				continue
			}
		case <-tick.C:
			if len(batch) == 0 {
				continue
			}
		}
		st.flush(batch)
		batch = nil
	}
}

func (st *alarmStint) flush(batch []stintAck) {
	byNS := map[string][]stintAck{}
	var order []string
	for _, a := range batch {
		if byNS[a.id.ns] == nil {
			order = append(order, a.id.ns)
		}
		byNS[a.id.ns] = append(byNS[a.id.ns], a)
	}
	for _, ns := range order {
		group := byNS[ns]
		cmd := &raftcmdv1.AckAlarms{Namespace: ns}
		for _, a := range group {
			cmd.Acks = append(cmd.Acks, a.ack)
		}
		res, err := st.propose(&raftcmdv1.Command{Op: &raftcmdv1.Command_AckAlarms{AckAlarms: cmd}})
		switch {
		case err == nil:
			st.countOutcomes(res)
		case errors.Is(err, fsm.ErrStaleAck):
			st.s.alarmMetrics.attempt("stale")
		case st.ctx.Err() == nil:
			// The leases stay; they expire and count as failed attempts.
			st.s.log.Warn("alarms: acking deliveries failed", "namespace", ns, "acks", len(group), "err", err)
		}
		for _, a := range group {
			st.release(a.id, false)
		}
	}
}

func (st *alarmStint) countOutcomes(res *raftcmdv1.Result) {
	for _, o := range res.GetAck().GetOutcomes() {
		st.s.alarmMetrics.ackOutcome(o.Status)
	}
}

// propose applies cmd on this node, the leader, with a request id of
// the stint: a retry after an unknown outcome applies it once. It never
// forwards: leases this stint begins must be this leader's.
func (st *alarmStint) propose(cmd *raftcmdv1.Command) (*raftcmdv1.Result, error) {
	id := fmt.Sprintf("%s%s:%d:%d", internalRequestPrefix, st.s.node.ID(), st.term, st.seq.Add(1))
	if len(id) > fsm.MaxRequestIDBytes {
		sum := sha256.Sum256([]byte(id))
		id = internalRequestPrefix + hex.EncodeToString(sum[:])
	}
	cmd.RequestId, cmd.RequestRetentionMs = id, internalRequestRetention.Milliseconds()
	for {
		res, err := st.apply(cmd)
		if !errors.Is(err, raftnode.ErrLeadershipLost) && !errors.Is(err, raftnode.ErrTimeout) {
			return res, err
		}
		if !st.s.node.IsLeader() || !sleepCtx(st.ctx, pollInterval) {
			return nil, err
		}
	}
}

// apply is Node.Apply, given up when the stint ends: Raft does not
// cancel an append, and a stopping node must not wait for a commit that
// may never come (the outcome is unknown; the next leader sorts it out).
func (st *alarmStint) apply(cmd *raftcmdv1.Command) (*raftcmdv1.Result, error) {
	type outcome struct {
		res *raftcmdv1.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := st.s.node.Apply(st.ctx, cmd)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-st.ctx.Done():
		return nil, st.ctx.Err()
	}
}
