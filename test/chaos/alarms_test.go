package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"sync"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
)

// The alarm workloads: a setter sets alarms due within a few seconds (and
// deletes some of them again) in a pull namespace, where two workers claim
// due alarms and ack them; another setter does the same in a webhook
// namespace, whose deliveries a local HTTP server receives. Every alarm
// has its own name, so deliveries name the alarm they deliver.

const (
	alarmNamespace = "chaos-alarms"
	hookNamespace  = "chaos-hooks"
)

// alarmRecord is what the harness knows of one alarm.
type alarmRecord struct {
	object, name string
	fireAt       time.Time
	setAcked     bool      // the set was answered (else its outcome is unknown)
	deleteTried  bool      // a delete was sent
	deleteAcked  time.Time // when a delete was answered; zero if not
	claims       []claim
	dropped      int // claims the worker did not ack, as if it crashed
}

// claim is one delivery: when the claim was sent and when it was
// answered, and the fire_at and payload it delivered.
type claim struct {
	sent, answered time.Time
	fireAt         time.Time
	payload        string
}

// alarmLog collects the alarms of one namespace and their deliveries.
type alarmLog struct {
	ns string
	// leased: a delivery is leased in the log before it is sent
	// (webhooks), so one sent just before a delete may arrive after it.
	leased  bool
	mu      sync.Mutex
	alarms  map[string]*alarmRecord // by object/name
	unknown int                     // deliveries of alarms never set
}

func newAlarmLog(ns string) *alarmLog { return &alarmLog{ns: ns, alarms: map[string]*alarmRecord{}} }

// setAlarms sets an alarm in log's namespace every ~100 ms until ctx
// ends; about one in eight is deleted again soon after.
func setAlarms(ctx context.Context, seed int64, c *cluster, log *alarmLog) {
	rng := rand.New(rand.NewSource(seed ^ 0x5ea1))
	live := &liveClient{c: c, retryFor: 5 * time.Second}
	defer live.close()
	for seq := 0; ctx.Err() == nil; seq++ {
		rec := &alarmRecord{object: fmt.Sprintf("a%d", seq%16), name: fmt.Sprintf("%s-%d", log.ns, seq),
			fireAt: time.Now().Add(time.Duration(200+rng.Intn(3000)) * time.Millisecond).Truncate(time.Millisecond)}
		log.mu.Lock()
		log.alarms[rec.object+"/"+rec.name] = rec
		log.mu.Unlock()
		id := fmt.Sprintf("chaos-alarm-%d-%d", seq, rng.Int63())
		acked := writeUntilAnswered(ctx, func(ctx context.Context) error {
			_, err := live.get().SetAlarm(ctx, log.ns, rec.object, client.AlarmSpec{Name: rec.name, FireAt: rec.fireAt, Payload: []byte(rec.name)}, client.WithRequestID(id))
			return err
		})
		log.mu.Lock()
		rec.setAcked = acked
		log.mu.Unlock()
		if acked && rng.Intn(8) == 0 {
			log.mu.Lock()
			rec.deleteTried = true
			log.mu.Unlock()
			id := fmt.Sprintf("chaos-alarm-del-%d-%d", seq, rng.Int63())
			if writeUntilAnswered(ctx, func(ctx context.Context) error {
				_, err := live.get().DeleteAlarm(ctx, log.ns, rec.object, rec.name, client.WithRequestID(id))
				return err
			}) {
				log.mu.Lock()
				rec.deleteAcked = time.Now()
				log.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(50+rng.Intn(100)) * time.Millisecond):
		}
	}
}

// writeUntilAnswered retries a write (which carries its request id) until
// it is answered or ctx ends; it reports whether it was answered.
func writeUntilAnswered(ctx context.Context, write func(context.Context) error) bool {
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := write(wctx)
		cancel()
		if err == nil {
			return true
		}
		if errors.Is(err, client.ErrInvalidArgument) {
			panic(fmt.Sprintf("chaos: the harness sent an invalid write: %v", err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// claimAlarms claims and acks due alarms as worker until ctx ends. One
// claim in ten it does not ack, as a worker that crashed would not: the
// lease must expire and the alarm be delivered again.
func claimAlarms(ctx context.Context, worker string, seed int64, c *cluster, log *alarmLog) {
	rng := rand.New(rand.NewSource(seed))
	live := &liveClient{c: c, rotate: int(seed), retryFor: 5 * time.Second}
	defer live.close()
	for ctx.Err() == nil {
		cl := live.get()
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		claimed, err := cl.ClaimAlarms(cctx, log.ns, worker, 32, 3*time.Second)
		cancel()
		now := time.Now()
		if err != nil || len(claimed) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		var acks []*cairnv1.AlarmAck
		log.mu.Lock()
		for _, a := range claimed {
			rec := log.alarms[a.Object+"/"+a.Name]
			if rec == nil {
				log.unknown++
			} else {
				rec.claims = append(rec.claims, claim{sent: sent, answered: now, fireAt: a.FireAt.AsTime(), payload: string(a.Payload)})
			}
			if rec != nil && rng.Intn(10) == 0 {
				rec.dropped++
				continue
			}
			acks = append(acks, &cairnv1.AlarmAck{Object: a.Object, Name: a.Name, LeaseId: a.LeaseId, Result: &cairnv1.AlarmAck_Done{Done: true}})
		}
		log.mu.Unlock()
		if len(acks) == 0 {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _ = cl.AckAlarms(actx, log.ns, acks) // a lost ack only means a redelivery
		cancel()
	}
}

// pending counts the alarms that must still be delivered: set
// (answered), not deleted, and not yet claimed by a worker that acked.
func (l *alarmLog) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.alarms {
		if a.setAcked && !a.deleteTried && len(a.claims) <= a.dropped {
			n++
		}
	}
	return n
}

// alarmFindings are the alarm checker's results.
type alarmFindings struct {
	set, delivered, redelivered, dropped int
	lost, early, afterDelete, wrong      []string
	unknownDeliveries                    int
}

// check checks the deliveries: every alarm set and not deleted was
// delivered at least once, and again after a claim that was not acked,
// with the fire_at and payload it was set with, none before its fire_at, none that a claim
// made after its delete was answered, and none that was never set.
func (l *alarmLog) check() alarmFindings {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := alarmFindings{unknownDeliveries: l.unknown}
	for key, a := range l.alarms {
		if a.setAcked {
			f.set++
		}
		if len(a.claims) > 0 {
			f.delivered++
			f.redelivered += len(a.claims) - 1
		}
		f.dropped += a.dropped
		switch {
		case a.setAcked && !a.deleteTried && len(a.claims) == 0:
			f.lost = append(f.lost, key)
		case a.setAcked && !a.deleteTried && len(a.claims) <= a.dropped:
			f.lost = append(f.lost, key+" (its lease expired unacked, and it was not delivered again)")
		}
		for _, c := range a.claims {
			if !c.fireAt.Equal(a.fireAt) || c.payload != a.name {
				f.wrong = append(f.wrong, fmt.Sprintf("%s set for %s with payload %q, delivered for %s with %q", key,
					a.fireAt.Format(time.StampMilli), a.name, c.fireAt.Format(time.StampMilli), c.payload))
			}
			if c.answered.Before(a.fireAt) {
				f.early = append(f.early, fmt.Sprintf("%s due %s, claim answered %s", key, a.fireAt.Format(time.StampMilli), c.answered.Format(time.StampMilli)))
			}
			if !l.leased && !a.deleteAcked.IsZero() && c.sent.After(a.deleteAcked) {
				f.afterDelete = append(f.afterDelete, fmt.Sprintf("%s deleted %s, claim sent %s", key, a.deleteAcked.Format(time.StampMilli), c.sent.Format(time.StampMilli)))
			}
		}
	}
	sort.Strings(f.lost)
	sort.Strings(f.early)
	sort.Strings(f.afterDelete)
	sort.Strings(f.wrong)
	return f
}
