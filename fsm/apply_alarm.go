package fsm

import (
	"encoding/binary"
	"fmt"
	"strconv"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/proto"
)

// Alarms: one handler per command, and the helpers every alarm change
// goes through (writeAlarm keeps the record, the listing index, the due
// index and the namespace's counts in step).
//
// Time: "due" is judged by the command's own time stamp (the proposing
// leader's clock; dueTime), so an alarm is never leased before its time
// by the clock of the leader that leases it, even when an earlier leader's
// clock ran ahead. Lease expiries and retry delays count from the FSM's
// log time (a.now), which never runs backwards.

const (
	statePending    = raftcmdv1.AlarmState_ALARM_STATE_PENDING
	stateDelivering = raftcmdv1.AlarmState_ALARM_STATE_DELIVERING
	stateDead       = raftcmdv1.AlarmState_ALARM_STATE_DEAD
)

// dueTime is the time alarms are judged due against: the command's time
// stamp, or log time when the stamp is missing or later.
func (a *applier) dueTime() int64 {
	if a.stamp > 0 && a.stamp < a.now {
		return a.stamp
	}
	return a.now
}

// loadAlarm reads an alarm's record.
func (a *applier) loadAlarm(ns, object, name string) (*raftcmdv1.AlarmRecord, bool) {
	v := a.tx.Bucket(shardBuckets[ShardOf(ns, object)]).Get(alarmKey(ns, object, name))
	if v == nil {
		return nil, false
	}
	return decodeAlarm(v), true
}

func decodeAlarm(v []byte) *raftcmdv1.AlarmRecord {
	rec := &raftcmdv1.AlarmRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		panic(fmt.Sprintf("fsm: alarm record: %v", err))
	}
	return rec
}

// writeAlarm replaces alarm (object, name)'s record old (nil: none) with
// rec (nil: delete it), keeping the listing index, the due index and ns's
// alarm counts in step. The caller writes ns.
func (a *applier) writeAlarm(ns *raftcmdv1.Namespace, object, name string, old, rec *raftcmdv1.AlarmRecord) {
	sb := a.tx.Bucket(shardBuckets[ShardOf(ns.Name, object)])
	due := a.tx.Bucket(bucketAlarmDue)
	key := alarmKey(ns.Name, object, name)
	a.alarmsChanged = true
	if old != nil {
		if k := dueKeyOf(ns.Name, object, name, old); k != nil {
			a.delete(due, k)
		}
		countAlarm(ns, old.State, false)
	}
	if rec == nil {
		a.delete(sb, key)
		a.delete(a.tx.Bucket(bucketAlarms), alarmIndexKey(ns.Name, object, name))
		return
	}
	rec.ModRevision = a.index
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	must(err)
	a.put(sb, key, b)
	if old == nil {
		a.put(a.tx.Bucket(bucketAlarms), alarmIndexKey(ns.Name, object, name), []byte{})
	}
	if k := dueKeyOf(ns.Name, object, name, rec); k != nil {
		a.put(due, k, []byte{})
	}
	countAlarm(ns, rec.State, true)
}

// countAlarm adds one to (or takes one from) ns's count of state.
func countAlarm(ns *raftcmdv1.Namespace, state raftcmdv1.AlarmState, add bool) {
	if ns.Alarms == nil {
		ns.Alarms = &raftcmdv1.AlarmCounts{}
	}
	var c *uint64
	switch state {
	case statePending:
		c = &ns.Alarms.Pending
	case stateDelivering:
		c = &ns.Alarms.Delivering
	case stateDead:
		c = &ns.Alarms.Dead
	default:
		panic(fmt.Sprintf("fsm: alarm in state %v", state))
	}
	switch {
	case add:
		*c++
	case *c > 0:
		*c--
	}
}

// storedAlarm is rec as results return it; without its payload unless
// withPayload.
func storedAlarm(object, name string, rec *raftcmdv1.AlarmRecord, withPayload bool) *raftcmdv1.StoredAlarm {
	r := proto.Clone(rec).(*raftcmdv1.AlarmRecord)
	if !withPayload {
		r.Payload = nil
	}
	return &raftcmdv1.StoredAlarm{Object: object, Name: name, Record: r}
}

func (a *applier) applySetAlarm(s *raftcmdv1.SetAlarm) (*raftcmdv1.Result, error) {
	ns, err := a.validateObject(s.GetNamespace(), s.GetAlarm().GetObject())
	if err != nil {
		return nil, err
	}
	if err := ValidateAlarmSpec("alarm", s.Alarm); err != nil {
		return nil, err
	}
	r := a.setAlarm(ns, s.Alarm)
	a.putNamespace(ns)
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_Alarm{Alarm: r}}, nil
}

// setAlarm creates or replaces an alarm: pending, due at its fire_at,
// attempt 0. A lease it held is gone: its ack will be stale.
func (a *applier) setAlarm(ns *raftcmdv1.Namespace, s *raftcmdv1.AlarmSpec) *raftcmdv1.AlarmResult {
	name := AlarmName(s.Name)
	old, found := a.loadAlarm(ns.Name, s.Object, name)
	fireAt := s.FireAtMs
	if s.FireInMs != nil {
		fireAt = min(a.dueTime()+*s.FireInMs, MaxAlarmFireAtMs)
	}
	rec := &raftcmdv1.AlarmRecord{
		FireAtMs: fireAt, Payload: s.Payload, RepeatEveryMs: s.RepeatEveryMs,
		State: statePending, NextDueMs: fireAt, CreateRevision: a.index,
	}
	if found {
		rec.CreateRevision = old.CreateRevision
	}
	a.writeAlarm(ns, s.Object, name, old, rec)
	return &raftcmdv1.AlarmResult{Created: !found, Alarm: storedAlarm(s.Object, name, rec, false)}
}

func (a *applier) applyDeleteAlarm(d *raftcmdv1.DeleteAlarm) (*raftcmdv1.Result, error) {
	ns, err := a.validateObject(d.GetNamespace(), d.GetAlarm().GetObject())
	if err != nil {
		return nil, err
	}
	if err := ValidateAlarmName("alarm.name", d.Alarm.GetName()); err != nil {
		return nil, err
	}
	r := a.deleteAlarm(ns, d.Alarm)
	if r.Deleted {
		a.putNamespace(ns)
	}
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_Alarm{Alarm: r}}, nil
}

func (a *applier) deleteAlarm(ns *raftcmdv1.Namespace, ref *raftcmdv1.AlarmRef) *raftcmdv1.AlarmResult {
	name := AlarmName(ref.Name)
	old, found := a.loadAlarm(ns.Name, ref.Object, name)
	if !found {
		return &raftcmdv1.AlarmResult{}
	}
	a.writeAlarm(ns, ref.Object, name, old, nil)
	return &raftcmdv1.AlarmResult{Deleted: true}
}

// deleteObjectAlarms deletes every alarm of object and returns how many
// there were. The caller writes ns.
func (a *applier) deleteObjectAlarms(ns *raftcmdv1.Namespace, object string) uint64 {
	sb := a.tx.Bucket(shardBuckets[ShardOf(ns.Name, object)])
	prefix := alarmObjectPrefix(ns.Name, object)
	var n uint64
	for {
		k, v := sb.Cursor().Seek(prefix)
		if k == nil || !hasPrefix(k, prefix) {
			return n
		}
		a.writeAlarm(ns, object, string(k[len(prefix):]), decodeAlarm(v), nil)
		n++
	}
}

// deleteNamespaceAlarms deletes every alarm of namespace ns, seeking
// afresh each time: bounded memory however many there are.
func (a *applier) deleteNamespaceAlarms(ns *raftcmdv1.Namespace) uint64 {
	prefix := appendLP(nil, ns.Name)
	idx := a.tx.Bucket(bucketAlarms)
	var n uint64
	for {
		k, _ := idx.Cursor().Seek(prefix)
		if k == nil || !hasPrefix(k, prefix) {
			return n
		}
		object, name, err := parseAlarmIndexKey(k[len(prefix):])
		if err != nil {
			panic(err)
		}
		old, found := a.loadAlarm(ns.Name, object, name)
		if !found {
			panic(fmt.Sprintf("fsm: alarm index names %q/%q/%q but it has no record", ns.Name, object, name))
		}
		a.writeAlarm(ns, object, name, old, nil)
		n++
	}
}

// alarmNamespace validates and reads the namespace of a delivery command.
func (a *applier) alarmNamespace(name string) (*raftcmdv1.Namespace, AlarmSettings, error) {
	if err := ValidateNamespace(name); err != nil {
		return nil, AlarmSettings{}, err
	}
	ns, err := getNamespace(a.tx, name)
	if err != nil {
		return nil, AlarmSettings{}, err
	}
	return ns, EffectiveAlarmSettings(ns.Settings), nil
}

// beginLease leases rec to holder under leaseID for leaseMs: the next
// attempt starts.
func (a *applier) beginLease(rec *raftcmdv1.AlarmRecord, holder, leaseID string, leaseMs int64) {
	rec.State = stateDelivering
	rec.Attempt++
	rec.Holder, rec.LeaseId = holder, leaseID
	rec.LeaseExpiresMs = a.now + leaseMs
}

func clearLease(rec *raftcmdv1.AlarmRecord) {
	rec.Holder, rec.LeaseId, rec.LeaseExpiresMs = "", "", 0
}

// leaseID is the id of the leases a command grants: its holder and its
// log index, unique for ever.
func (a *applier) leaseID(holder string) string {
	return holder + "@" + strconv.FormatUint(a.index, 10)
}

// dueRefs returns up to limit alarms of ns in the due index under kind
// whose time is at or before t, earliest first.
func (a *applier) dueRefs(ns string, kind byte, t int64, limit int) []*raftcmdv1.AlarmRef {
	prefix := append(appendLP(nil, ns), kind)
	var out []*raftcmdv1.AlarmRef
	c := a.tx.Bucket(bucketAlarmDue).Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
		if len(k) < len(prefix)+8 || int64(binary.BigEndian.Uint64(k[len(prefix):])) > t {
			break
		}
		object, name, err := parseDueRef(k[len(prefix)+8:])
		if err != nil {
			panic(err)
		}
		out = append(out, &raftcmdv1.AlarmRef{Object: object, Name: name})
	}
	return out
}

func (a *applier) applyClaimAlarms(c *raftcmdv1.ClaimAlarms) (*raftcmdv1.Result, error) {
	ns, set, err := a.alarmNamespace(c.GetNamespace())
	if err != nil {
		return nil, err
	}
	if set.Webhook() {
		return nil, fmt.Errorf("%w: namespace %q delivers its alarms to a webhook; claims are for namespaces without one", ErrWrongDeliveryMode, ns.Name)
	}
	if c.Max < 1 || c.Max > MaxClaimAlarms {
		return nil, fmt.Errorf("%w: max is %d; allowed are 1 to %d", ErrInvalidArgument, c.Max, MaxClaimAlarms)
	}
	lease := c.LeaseMs
	if lease == 0 {
		lease = set.LeaseMs
	}
	if err := ValidateAlarmLease("lease", lease); err != nil {
		return nil, err
	}
	if err := ValidateAlarmHolder("holder", c.Holder); err != nil {
		return nil, err
	}
	leaseID := a.leaseID(c.Holder)
	res := &raftcmdv1.AlarmsResult{}
	size := 0
	for _, ref := range a.dueRefs(ns.Name, duePending, a.dueTime(), int(c.Max)) {
		rec, found := a.loadAlarm(ns.Name, ref.Object, ref.Name)
		if !found || rec.State != statePending {
			panic(fmt.Sprintf("fsm: due index names %q/%q/%q, which is not pending", ns.Name, ref.Object, ref.Name))
		}
		if size += len(rec.Payload); len(res.Alarms) > 0 && size > claimMaxBytes {
			break
		}
		old := proto.Clone(rec).(*raftcmdv1.AlarmRecord)
		a.beginLease(rec, c.Holder, leaseID, lease)
		a.writeAlarm(ns, ref.Object, ref.Name, old, rec)
		res.Alarms = append(res.Alarms, storedAlarm(ref.Object, ref.Name, rec, true))
	}
	if len(res.Alarms) > 0 {
		a.putNamespace(ns)
	}
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_Alarms{Alarms: res}}, nil
}

// validateAlarmRef checks a reference to an alarm.
func validateAlarmRef(field string, ref *raftcmdv1.AlarmRef) error {
	if err := ValidateObjectName(ref.GetObject()); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return ValidateAlarmName(field+".name", ref.GetName())
}

func (a *applier) applyBeginDelivery(b *raftcmdv1.BeginDelivery) (*raftcmdv1.Result, error) {
	ns, _, err := a.alarmNamespace(b.GetNamespace())
	if err != nil {
		return nil, err
	}
	if len(b.Alarms) > MaxAlarmRefs {
		return nil, fmt.Errorf("%w: alarms holds %d entries, limit is %d", ErrInvalidArgument, len(b.Alarms), MaxAlarmRefs)
	}
	for i, ref := range b.Alarms {
		if err := validateAlarmRef(fmt.Sprintf("alarms[%d]", i), ref); err != nil {
			return nil, err
		}
	}
	if err := ValidateAlarmLease("lease_ms", b.LeaseMs); err != nil {
		return nil, err
	}
	if err := ValidateAlarmHolder("holder", b.Holder); err != nil {
		return nil, err
	}
	leaseID := a.leaseID(b.Holder)
	res := &raftcmdv1.AlarmsResult{}
	for _, ref := range b.Alarms {
		name := AlarmName(ref.Name)
		rec, found := a.loadAlarm(ns.Name, ref.Object, name)
		if !found || rec.State != statePending || rec.NextDueMs > a.dueTime() {
			continue // gone, leased, dead or not yet due: left alone
		}
		old := proto.Clone(rec).(*raftcmdv1.AlarmRecord)
		a.beginLease(rec, b.Holder, leaseID, b.LeaseMs)
		a.writeAlarm(ns, ref.Object, name, old, rec)
		res.Alarms = append(res.Alarms, storedAlarm(ref.Object, name, rec, false))
	}
	if len(res.Alarms) > 0 {
		a.putNamespace(ns)
	}
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_Alarms{Alarms: res}}, nil
}

func validateAck(field string, ack *raftcmdv1.AlarmAck) error {
	if err := validateAlarmRef(field, &raftcmdv1.AlarmRef{Object: ack.GetObject(), Name: ack.GetName()}); err != nil {
		return err
	}
	if ack.LeaseId == "" || len(ack.LeaseId) > MaxLeaseIDBytes {
		return fmt.Errorf("%w: %s.lease_id is %d bytes; allowed are 1 to %d", ErrInvalidArgument, field, len(ack.LeaseId), MaxLeaseIDBytes)
	}
	if ack.Kind < raftcmdv1.AckKind_ACK_KIND_DONE || ack.Kind > raftcmdv1.AckKind_ACK_KIND_EXPIRE {
		return fmt.Errorf("%w: %s: unknown ack kind %d", ErrInvalidArgument, field, ack.Kind)
	}
	if len(ack.Error) > MaxAlarmErrorBytes {
		return fmt.Errorf("%w: %s.error is %d bytes, limit is %d", ErrInvalidArgument, field, len(ack.Error), MaxAlarmErrorBytes)
	}
	return nil
}

func (a *applier) applyAckAlarms(c *raftcmdv1.AckAlarms) (*raftcmdv1.Result, error) {
	ns, set, err := a.alarmNamespace(c.GetNamespace())
	if err != nil {
		return nil, err
	}
	if len(c.Acks) == 0 || len(c.Acks) > MaxAlarmRefs {
		return nil, fmt.Errorf("%w: acks holds %d entries; allowed are 1 to %d", ErrInvalidArgument, len(c.Acks), MaxAlarmRefs)
	}
	for i, ack := range c.Acks {
		if err := validateAck(fmt.Sprintf("acks[%d]", i), ack); err != nil {
			return nil, err
		}
	}
	res := &raftcmdv1.AckResult{}
	stale := 0
	firstStale := ""
	for _, ack := range c.Acks {
		out := a.ack(ns, set, ack)
		if out.Status == raftcmdv1.AckStatus_ACK_STATUS_STALE {
			if stale++; firstStale == "" {
				firstStale = out.Error
			}
		}
		res.Outcomes = append(res.Outcomes, out)
	}
	if stale == len(c.Acks) {
		// Nothing was written: a stale ack writes nothing.
		if stale == 1 {
			return nil, fmt.Errorf("%w: %s", ErrStaleAck, firstStale)
		}
		return nil, fmt.Errorf("%w: all %d acks are stale; the first: %s", ErrStaleAck, stale, firstStale)
	}
	a.putNamespace(ns)
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_Ack{Ack: res}}, nil
}

// ack applies one ack; a stale one changes nothing.
func (a *applier) ack(ns *raftcmdv1.Namespace, set AlarmSettings, ack *raftcmdv1.AlarmAck) *raftcmdv1.AckOutcome {
	name := AlarmName(ack.Name)
	rec, found := a.loadAlarm(ns.Name, ack.Object, name)
	staleMsg := ""
	switch {
	case !found:
		staleMsg = fmt.Sprintf("alarm %q of object %q does not exist (completed, or deleted)", name, ack.Object)
	case rec.State != stateDelivering:
		staleMsg = fmt.Sprintf("alarm %q of object %q is %s, not delivering under lease %q", name, ack.Object, stateName(rec.State), ack.LeaseId)
	case rec.LeaseId != ack.LeaseId:
		staleMsg = fmt.Sprintf("alarm %q of object %q is delivering under lease %q, not %q (the lease expired or was taken over)", name, ack.Object, rec.LeaseId, ack.LeaseId)
	case ack.Kind == raftcmdv1.AckKind_ACK_KIND_EXPIRE && rec.LeaseExpiresMs > a.dueTime():
		staleMsg = fmt.Sprintf("lease %q of alarm %q of object %q has not expired", ack.LeaseId, name, ack.Object)
	}
	if staleMsg != "" {
		return &raftcmdv1.AckOutcome{Status: raftcmdv1.AckStatus_ACK_STATUS_STALE, Error: staleMsg}
	}
	old := proto.Clone(rec).(*raftcmdv1.AlarmRecord)
	var status raftcmdv1.AckStatus
	switch ack.Kind {
	case raftcmdv1.AckKind_ACK_KIND_DONE:
		if rec.RepeatEveryMs == 0 {
			a.writeAlarm(ns, ack.Object, name, old, nil)
			return &raftcmdv1.AckOutcome{Status: raftcmdv1.AckStatus_ACK_STATUS_COMPLETED}
		}
		rec.FireAtMs = nextOccurrence(rec.FireAtMs, rec.RepeatEveryMs, a.now)
		rec.NextDueMs, rec.Attempt, rec.State, rec.LastError = rec.FireAtMs, 0, statePending, ""
		status = raftcmdv1.AckStatus_ACK_STATUS_REARMED
	case raftcmdv1.AckKind_ACK_KIND_RETRY:
		status = a.failAttempt(rec, set, ack.Error)
	case raftcmdv1.AckKind_ACK_KIND_EXPIRE:
		status = a.failAttempt(rec, set, fmt.Sprintf("lease %q expired without an ack", rec.LeaseId))
	case raftcmdv1.AckKind_ACK_KIND_REQUEUE:
		rec.State = statePending // due again at once: next_due_ms has passed
		if rec.Attempt > 0 {
			rec.Attempt--
		}
		status = raftcmdv1.AckStatus_ACK_STATUS_REQUEUED
	}
	clearLease(rec)
	a.writeAlarm(ns, ack.Object, name, old, rec)
	return &raftcmdv1.AckOutcome{Status: status, Alarm: storedAlarm(ack.Object, name, rec, false)}
}

// failAttempt records a failed attempt: a retry after
// retry_initial * 2^(attempt-1), or dead once max_retries retries have
// failed too.
func (a *applier) failAttempt(rec *raftcmdv1.AlarmRecord, set AlarmSettings, msg string) raftcmdv1.AckStatus {
	if msg == "" {
		msg = "delivery failed"
	}
	rec.LastError = msg
	if rec.Attempt > set.MaxRetries {
		rec.State, rec.NextDueMs = stateDead, 0
		return raftcmdv1.AckStatus_ACK_STATUS_DEAD
	}
	rec.State, rec.NextDueMs = statePending, a.now+backoffMs(set.RetryInitialMs, rec.Attempt)
	return raftcmdv1.AckStatus_ACK_STATUS_RETRY_SCHEDULED
}

// backoffMs is the delay after failed attempt number attempt (1 for the
// first): initial * 2^(attempt-1), at most a day.
func backoffMs(initial int64, attempt uint32) int64 {
	d := initial
	for i := uint32(1); i < attempt && d < maxAlarmBackoffMs; i++ {
		d *= 2
	}
	return min(d, maxAlarmBackoffMs)
}

// nextOccurrence returns the first fireAt + k*every (k >= 1) after now.
func nextOccurrence(fireAt, every, now int64) int64 {
	if now < fireAt {
		return fireAt + every
	}
	return fireAt + ((now-fireAt)/every+1)*every
}

func stateName(s raftcmdv1.AlarmState) string {
	switch s {
	case statePending:
		return "pending"
	case stateDelivering:
		return "delivering"
	case stateDead:
		return "dead"
	}
	return s.String()
}
