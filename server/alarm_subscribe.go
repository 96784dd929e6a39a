package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// defaultMaxInFlight is a subscription's bound of unacked alarms when
	// it gives none.
	defaultMaxInFlight = 10
	// subscribeIdle is the longest a subscription waits before it looks
	// for due alarms again (it also wakes on every applied entry).
	subscribeIdle = 250 * time.Millisecond
)

// heldLease is an alarm a subscription streamed and its worker has not
// acked yet (as far as this node knows).
type heldLease struct {
	object, name, lease string
	expires             time.Time
}

// SubscribeAlarms claims due alarms for a worker that keeps the call open
// and streams them, keeping at most max_in_flight unacked. The worker
// acks through AckAlarms (on any node).
func (a *alarmService) SubscribeAlarms(req *cairnv1.SubscribeAlarmsRequest, stream cairnv1.AlarmService_SubscribeAlarmsServer) error {
	s := a.s
	if err := checkNamespace(req.Namespace); err != nil {
		return err
	}
	maxInFlight := req.MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = defaultMaxInFlight
	}
	if maxInFlight > fsm.MaxClaimAlarms {
		return invalidf("max_in_flight is %d, limit is %d", maxInFlight, fsm.MaxClaimAlarms)
	}
	lease, err := leaseMs("lease", req.Lease)
	if err != nil {
		return err
	}
	worker, err := workerName("worker", req.Worker)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	if _, err := s.readBarrier(ctx, Linearizable, 0); err != nil {
		return err
	}
	ns, err := s.state.Namespace(req.Namespace)
	if err != nil {
		return err
	}
	if fsm.EffectiveAlarmSettings(ns.Settings).Webhook() {
		return fmt.Errorf("%w: namespace %q delivers its alarms to a webhook; subscriptions are for namespaces without one", fsm.ErrWrongDeliveryMode, ns.Name)
	}
	if err := stream.Send(&cairnv1.SubscribeAlarmsResponse{Created: true, NodeId: s.node.ID()}); err != nil {
		return err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	streamID := hex.EncodeToString(rnd[:])
	var seq uint64
	var held []heldLease
	for {
		current, _ := s.hub.Current()
		pos, err := s.hub.since(current+1, 0, false)
		if err != nil {
			return status.Error(codes.Unavailable, "the node is stopping; subscribe again (to any node)")
		}
		held = s.stillHeld(req.Namespace, held)
		now := time.Now()
		wait := subscribeIdle
		if free := int(maxInFlight) - len(held); free > 0 {
			due, ok := s.state.NextAlarmDue(req.Namespace)
			if ok && due <= now.UnixMilli() {
				seq++
				id := fmt.Sprintf("%ssub:%s:%d", internalRequestPrefix, streamID, seq)
				alarms, _, err := s.claimAlarms(ctx, req.Namespace, uint32(free), lease, worker, id, internalRequestRetention.Milliseconds())
				switch {
				case ctx.Err() != nil:
					return ctx.Err()
				case err != nil && status.Code(toStatus(err)) != codes.Unavailable:
					return err
				case err != nil:
					wait = pollInterval // no leader: try again soon
				case len(alarms) > 0:
					if err := stream.Send(&cairnv1.SubscribeAlarmsResponse{Alarms: alarms, NodeId: s.node.ID()}); err != nil {
						return err
					}
					for _, al := range alarms {
						held = append(held, heldLease{al.Object, al.Name, al.LeaseId, al.LeaseExpiresAt.AsTime()})
					}
					continue // more may be due
				}
			} else if ok {
				wait = min(wait, time.UnixMilli(due).Sub(now))
			}
		}
		for _, h := range held {
			wait = min(wait, h.expires.Sub(now))
		}
		if err := waitWake(ctx, pos.wake, max(wait, time.Millisecond)); err != nil {
			return err
		}
	}
}

// stillHeld returns the leases of held that this node's state still
// shows delivering under the same lease and not expired.
func (s *Server) stillHeld(ns string, held []heldLease) []heldLease {
	out := held[:0]
	now := time.Now()
	for _, h := range held {
		if !now.Before(h.expires) {
			continue
		}
		al, err := s.state.Alarm(ns, h.object, h.name)
		if err != nil || al.GetRecord().GetLeaseId() != h.lease {
			continue
		}
		out = append(out, h)
	}
	return out
}

// waitWake waits until wake is closed, d passes or ctx ends (an error).
func waitWake(ctx context.Context, wake <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
	case <-t.C:
	}
	return nil
}
