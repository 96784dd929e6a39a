package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// Alarm commands applied through ApplyBatch, with their time stamps set
// by the test (t0 and later), and the invariants of the three places an
// alarm lives checked after each test.

// t0 is a log time after every stamp the helpers give by default to the
// setup commands (baseTimeMs + index seconds).
const t0 = baseTimeMs + 100_000

func at(ms int64, c *raftcmdv1.Command) *raftcmdv1.Command {
	c.TimeUnixMs = ms
	return c
}

func cmdSetAlarm(ns, object, name string, fireAt int64, payload string, repeatMs int64) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_SetAlarm{SetAlarm: &raftcmdv1.SetAlarm{Namespace: ns, Alarm: &raftcmdv1.AlarmSpec{
		Object: object, Name: name, FireAtMs: fireAt, Payload: []byte(payload), RepeatEveryMs: repeatMs,
	}}}}
}

func cmdDeleteAlarm(ns, object, name string) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_DeleteAlarm{DeleteAlarm: &raftcmdv1.DeleteAlarm{
		Namespace: ns, Alarm: &raftcmdv1.AlarmRef{Object: object, Name: name},
	}}}
}

func cmdClaim(ns string, max uint32, leaseMs int64, holder string) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_ClaimAlarms{ClaimAlarms: &raftcmdv1.ClaimAlarms{
		Namespace: ns, Max: max, LeaseMs: leaseMs, Holder: holder,
	}}}
}

// cmdBegin begins delivery of the alarms named "object/name".
func cmdBegin(ns string, leaseMs int64, holder string, refs ...string) *raftcmdv1.Command {
	b := &raftcmdv1.BeginDelivery{Namespace: ns, LeaseMs: leaseMs, Holder: holder}
	for _, r := range refs {
		obj, name, _ := strings.Cut(r, "/")
		b.Alarms = append(b.Alarms, &raftcmdv1.AlarmRef{Object: obj, Name: name})
	}
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_BeginDelivery{BeginDelivery: b}}
}

func ack(object, name, lease string, kind raftcmdv1.AckKind, msg string) *raftcmdv1.AlarmAck {
	return &raftcmdv1.AlarmAck{Object: object, Name: name, LeaseId: lease, Kind: kind, Error: msg}
}

func cmdAck(ns string, acks ...*raftcmdv1.AlarmAck) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_AckAlarms{AckAlarms: &raftcmdv1.AckAlarms{Namespace: ns, Acks: acks}}}
}

const (
	ackDone    = raftcmdv1.AckKind_ACK_KIND_DONE
	ackRetry   = raftcmdv1.AckKind_ACK_KIND_RETRY
	ackRequeue = raftcmdv1.AckKind_ACK_KIND_REQUEUE
	ackExpire  = raftcmdv1.AckKind_ACK_KIND_EXPIRE
)

func u32(v uint32) *uint32 { return &v }

// cmdAlarmNamespace creates a namespace with alarm settings.
func cmdAlarmNamespace(name, webhook string, retryInitialMs uint64, maxRetries *uint32, leaseMs uint64) *raftcmdv1.Command {
	s := &raftcmdv1.NamespaceSettings{AlarmWebhookUrl: webhook, AlarmRetryInitialMs: retryInitialMs, AlarmMaxRetries: maxRetries, AlarmLeaseMs: leaseMs}
	if webhook != "" {
		s.AlarmWebhookSecret = "s3cret"
	}
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_PutNamespace{PutNamespace: &raftcmdv1.PutNamespace{Name: name, Settings: s}}}
}

func mustAlarm(t testing.TB, f *FSM, ns, object, name string) *raftcmdv1.AlarmRecord {
	t.Helper()
	a, err := f.Alarm(ns, object, name)
	if err != nil {
		t.Fatalf("Alarm(%q, %q, %q): %v", ns, object, name, err)
	}
	return a.Record
}

// alarmFSM returns an FSM with a pull namespace "p" (retry 100 ms, 2
// retries, lease 1 s) and a webhook namespace "w", and checks the alarm
// invariants when the test ends.
func alarmFSM(t *testing.T) *FSM {
	t.Helper()
	f := mustNew(t)
	mustApply(t, f, cmdAlarmNamespace("p", "", 100, u32(2), 1000), cmdAlarmNamespace("w", "http://127.0.0.1:1/hook", 0, nil, 0))
	t.Cleanup(func() {
		if !t.Failed() {
			mustAlarmInvariants(t, f)
		}
	})
	return f
}

// mustAlarmInvariants checks, over the raw database, that every alarm
// record has exactly its listing entry and its due entry (by state), that
// the indexes hold nothing else, and that each namespace's counts match
// its records.
func mustAlarmInvariants(t testing.TB, f *FSM) {
	t.Helper()
	err := f.view(func(tx *bolt.Tx) error {
		counts := map[string]*raftcmdv1.AlarmCounts{}
		records, dueEntries := 0, 0
		for _, sbName := range shardBuckets {
			c := tx.Bucket(sbName).Cursor()
			for k, v := c.Seek([]byte{prefixAlarm}); k != nil && k[0] == prefixAlarm; k, v = c.Next() {
				records++
				r := k[1:]
				nl := int(binary.BigEndian.Uint16(r))
				ns := string(r[2 : 2+nl])
				r = r[2+nl:]
				ol := int(binary.BigEndian.Uint16(r))
				obj, name := string(r[2:2+ol]), string(r[2+ol:])
				if ShardOf(ns, obj) != shardIndex(sbName) {
					return fmt.Errorf("alarm %q/%q/%q in shard %s", ns, obj, name, sbName)
				}
				rec := decodeAlarm(v)
				if tx.Bucket(bucketAlarms).Get(alarmIndexKey(ns, obj, name)) == nil {
					return fmt.Errorf("alarm %q/%q/%q has no listing entry", ns, obj, name)
				}
				if dk := dueKeyOf(ns, obj, name, rec); dk != nil {
					dueEntries++
					if tx.Bucket(bucketAlarmDue).Get(dk) == nil {
						return fmt.Errorf("alarm %q/%q/%q (%v) has no due entry", ns, obj, name, rec.State)
					}
				}
				if counts[ns] == nil {
					counts[ns] = &raftcmdv1.AlarmCounts{}
				}
				switch rec.State {
				case statePending:
					counts[ns].Pending++
				case stateDelivering:
					counts[ns].Delivering++
					if rec.LeaseId == "" || rec.Holder == "" || rec.Attempt == 0 {
						return fmt.Errorf("alarm %q/%q/%q delivering without lease or attempt: %v", ns, obj, name, rec)
					}
				case stateDead:
					counts[ns].Dead++
				default:
					return fmt.Errorf("alarm %q/%q/%q in state %v", ns, obj, name, rec.State)
				}
			}
		}
		if n := tx.Bucket(bucketAlarms).Stats().KeyN; n != records {
			return fmt.Errorf("listing index holds %d entries for %d alarms", n, records)
		}
		if n := tx.Bucket(bucketAlarmDue).Stats().KeyN; n != dueEntries {
			return fmt.Errorf("due index holds %d entries, %d alarms are pending or delivering", n, dueEntries)
		}
		return tx.Bucket(bucketNamespaces).ForEach(func(k, v []byte) error {
			ns := &raftcmdv1.Namespace{}
			if err := proto.Unmarshal(v, ns); err != nil {
				return err
			}
			want := counts[string(k)]
			if want == nil {
				want = &raftcmdv1.AlarmCounts{}
			}
			got := ns.GetAlarms()
			if got.GetPending() != want.Pending || got.GetDelivering() != want.Delivering || got.GetDead() != want.Dead {
				return fmt.Errorf("namespace %q counts %v, records add up to %v", k, got, want)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func shardIndex(name []byte) uint8 {
	for i, n := range shardBuckets {
		if bytes.Equal(n, name) {
			return uint8(i)
		}
	}
	return 0
}

func TestAlarmSetGetReplaceDelete(t *testing.T) {
	f := alarmFSM(t)
	res := mustApply1(t, f, at(t0, cmdSetAlarm("p", "room-1", "", t0+5000, "hello", 0)))
	r := res.GetAlarm()
	if !r.Created || r.Alarm.Name != DefaultAlarmName || r.Alarm.Record.Payload != nil {
		t.Fatalf("set: %v; want created, name %q, no payload in the result", r, DefaultAlarmName)
	}
	a := mustAlarm(t, f, "p", "room-1", "")
	if a.State != statePending || a.Attempt != 0 || a.NextDueMs != t0+5000 || a.FireAtMs != t0+5000 || string(a.Payload) != "hello" ||
		a.CreateRevision != res.Revision || a.ModRevision != res.Revision {
		t.Fatalf("alarm after set: %v", a)
	}
	if c := mustNamespace(t, f, "p").Alarms; c.GetPending() != 1 {
		t.Fatalf("namespace counts %v, want 1 pending", c)
	}
	if info := mustObject(t, f, "p", "room-1"); info.Alarms != 1 || info.Keys != 0 {
		t.Fatalf("object info of an object with only an alarm: %+v", info)
	}

	res2 := mustApply1(t, f, at(t0+1, cmdSetAlarm("p", "room-1", "default", t0+9000, "again", 0)))
	if res2.GetAlarm().Created {
		t.Fatal("replacing an alarm says created")
	}
	a = mustAlarm(t, f, "p", "room-1", "default")
	if a.FireAtMs != t0+9000 || string(a.Payload) != "again" || a.CreateRevision != res.Revision || a.ModRevision != res2.Revision {
		t.Fatalf("alarm after replace: %v", a)
	}

	if d := mustApply1(t, f, at(t0+2, cmdDeleteAlarm("p", "room-1", ""))); !d.GetAlarm().Deleted {
		t.Fatalf("delete: %v", d)
	}
	if _, err := f.Alarm("p", "room-1", ""); !errors.Is(err, ErrAlarmNotFound) {
		t.Fatalf("Alarm after delete: %v, want ErrAlarmNotFound", err)
	}
	if _, err := f.Object("p", "room-1"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("Object after its only alarm is deleted: %v, want ErrObjectNotFound", err)
	}
	if d := mustApply1(t, f, at(t0+3, cmdDeleteAlarm("p", "room-1", ""))); d.GetAlarm().Deleted {
		t.Fatal("deleting a missing alarm says deleted")
	}
}

func TestAlarmRejected(t *testing.T) {
	f := alarmFSM(t)
	mustApply1(t, f, at(t0, cmdSetAlarm("p", "o", "a", t0, "", 0)))
	big := strings.Repeat("x", MaxAlarmPayloadBytes+1)
	for _, tc := range []struct {
		name string
		cmd  *raftcmdv1.Command
		want error
		msg  string
	}{
		{"unknown namespace", cmdSetAlarm("nope", "o", "a", t0, "", 0), ErrNamespaceNotFound, "nope"},
		{"empty object", cmdSetAlarm("p", "", "a", t0, "", 0), ErrInvalidArgument, "object"},
		{"long name", cmdSetAlarm("p", "o", strings.Repeat("n", 257), t0, "", 0), ErrInvalidArgument, "257 bytes, limit is 256"},
		{"fire_at 0", cmdSetAlarm("p", "o", "a", 0, "", 0), ErrInvalidArgument, "fire_at"},
		{"fire_at after 9999", cmdSetAlarm("p", "o", "a", MaxAlarmFireAtMs+1, "", 0), ErrInvalidArgument, "fire_at"},
		{"payload too large", cmdSetAlarm("p", "o", "a", t0, big, 0), ErrInvalidArgument, "payload is 65537 bytes, limit is 65536"},
		{"repeat too short", cmdSetAlarm("p", "o", "a", t0, "", 99), ErrInvalidArgument, "repeat_every"},
		{"delete: long name", cmdDeleteAlarm("p", "o", strings.Repeat("n", 257)), ErrInvalidArgument, "limit is 256"},
		{"claim: webhook namespace", cmdClaim("w", 1, 0, "w1"), ErrWrongDeliveryMode, "webhook"},
		{"claim: max 0", cmdClaim("p", 0, 0, "w1"), ErrInvalidArgument, "max"},
		{"claim: max too large", cmdClaim("p", MaxClaimAlarms+1, 0, "w1"), ErrInvalidArgument, "max"},
		{"claim: short lease", cmdClaim("p", 1, 50, "w1"), ErrInvalidArgument, "lease"},
		{"claim: no holder", cmdClaim("p", 1, 0, ""), ErrInvalidArgument, "holder"},
		{"begin: no lease", cmdBegin("w", 0, "leader:n1:1", "o/a"), ErrInvalidArgument, "lease_ms"},
		{"ack: none", cmdAck("p"), ErrInvalidArgument, "acks"},
		{"ack: no lease id", cmdAck("p", ack("o", "a", "", ackDone, "")), ErrInvalidArgument, "lease_id"},
		{"ack: no kind", cmdAck("p", ack("o", "a", "w@1", 0, "")), ErrInvalidArgument, "kind"},
		{"ack: long error", cmdAck("p", ack("o", "a", "w@1", ackRetry, strings.Repeat("e", MaxAlarmErrorBytes+1))), ErrInvalidArgument, "error"},
		{"ack: stale (pending alarm)", cmdAck("p", ack("o", "a", "w@1", ackDone, "")), ErrStaleAck, "pending"},
		{"ack: stale (missing alarm)", cmdAck("p", ack("o", "zz", "w@1", ackDone, "")), ErrStaleAck, "does not exist"},
		{"namespace: url without secret", &raftcmdv1.Command{Op: &raftcmdv1.Command_PutNamespace{PutNamespace: &raftcmdv1.PutNamespace{
			Name: "x", Settings: &raftcmdv1.NamespaceSettings{AlarmWebhookUrl: "http://h/"}}}}, ErrInvalidArgument, "webhook_secret"},
		{"namespace: retry too short", cmdAlarmNamespace("x", "", 5, nil, 0), ErrInvalidArgument, "retry_initial_ms"},
		{"namespace: too many retries", cmdAlarmNamespace("x", "", 0, u32(101), 0), ErrInvalidArgument, "max_retries"},
		{"namespace: lease too long", cmdAlarmNamespace("x", "", 0, nil, MaxAlarmLeaseMs+1), ErrInvalidArgument, "lease_ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := mustReject(t, f, at(t0+1, tc.cmd), tc.want)
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestAlarmDueIndex(t *testing.T) {
	f := alarmFSM(t)
	// Out of order, with a name holding 0x00 and an object that sorts
	// between others only by its bytes.
	mustApply(t, f,
		at(t0, cmdSetAlarm("p", "b", "x", t0+300, "", 0)),
		at(t0, cmdSetAlarm("p", "a", "x", t0+100, "", 0)),
		at(t0, cmdSetAlarm("p", "a\x00z", "x", t0+200, "", 0)),
		at(t0, cmdSetAlarm("p", "c", "x", t0+1000, "", 0)),
		at(t0, cmdSetAlarm("w", "a", "x", t0+50, "", 0)), // another namespace
	)
	refs := func(as []*raftcmdv1.StoredAlarm) string {
		var s []string
		for _, a := range as {
			s = append(s, a.Object+"/"+a.Name)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		now  int64
		want string
	}{{t0, ""}, {t0 + 100, "a/x"}, {t0 + 299, "a/x,a\x00z/x"}, {t0 + 5000, "a/x,a\x00z/x,b/x,c/x"}} {
		pending, expired, err := f.DueAlarms("p", tc.now, 10)
		if err != nil || refs(pending) != tc.want || len(expired) != 0 {
			t.Fatalf("DueAlarms(p, +%d) = %q, %d expired, %v; want %q", tc.now-t0, refs(pending), len(expired), err, tc.want)
		}
	}
	if p, _, _ := f.DueAlarms("p", t0+5000, 2); refs(p) != "a/x,a\x00z/x" {
		t.Fatalf("DueAlarms with limit 2 = %q", refs(p))
	}
	if due, ok := f.NextAlarmDue("p"); !ok || due != t0+100 {
		t.Fatalf("NextAlarmDue = %d, %v", due, ok)
	}
	// Leasing moves alarms to the lease part of the index, at their expiry.
	res := mustApply1(t, f, at(t0+250, cmdClaim("p", 10, 500, "w1")))
	if got := refs(res.GetAlarms().Alarms); got != "a/x,a\x00z/x" {
		t.Fatalf("claim at +250 leased %q", got)
	}
	pending, expired, _ := f.DueAlarms("p", t0+749, 10)
	if refs(pending) != "b/x" || len(expired) != 0 {
		t.Fatalf("at +749: pending %q, expired %q", refs(pending), refs(expired))
	}
	if _, expired, _ := f.DueAlarms("p", t0+750, 10); refs(expired) != "a/x,a\x00z/x" {
		t.Fatalf("at +750 (lease expiry): expired %q", refs(expired))
	}
	leased, err := f.LeasedAlarms("p", 10)
	if err != nil || refs(leased) != "a/x,a\x00z/x" || leased[0].Record.Holder != "w1" {
		t.Fatalf("LeasedAlarms = %v, %v", leased, err)
	}
}

func TestAlarmClaim(t *testing.T) {
	f := alarmFSM(t)
	for i := range 5 {
		mustApply1(t, f, at(t0, cmdSetAlarm("p", fmt.Sprintf("o%d", i), "", t0+int64(i)*100, fmt.Sprint("payload", i), 0)))
	}
	if res := mustApply1(t, f, at(t0-1, cmdClaim("p", 10, 0, "w1"))); len(res.GetAlarms().Alarms) != 0 {
		t.Fatalf("a claim before any alarm is due leased %v", res.GetAlarms().Alarms)
	}
	res := mustApply1(t, f, at(t0+150, cmdClaim("p", 10, 0, "w1")))
	got := res.GetAlarms().Alarms
	if len(got) != 2 || got[0].Object != "o0" || got[1].Object != "o1" {
		t.Fatalf("claim at +150: %v", got)
	}
	lease := fmt.Sprintf("w1@%d", res.Revision)
	for _, a := range got {
		r := a.Record
		if r.State != stateDelivering || r.Attempt != 1 || r.LeaseId != lease || r.Holder != "w1" ||
			r.LeaseExpiresMs != t0+150+1000 || !strings.HasPrefix(string(r.Payload), "payload") {
			t.Fatalf("claimed alarm %v; want delivering, attempt 1, lease %q expiring at +1150 (namespace lease), with payload", a, lease)
		}
	}
	// Leased alarms are not claimed again; max bounds the claim.
	res = mustApply1(t, f, at(t0+1000, cmdClaim("p", 2, 300, "w2")))
	if got := res.GetAlarms().Alarms; len(got) != 2 || got[0].Object != "o2" || got[1].Object != "o3" || got[0].Record.LeaseExpiresMs != t0+1300 {
		t.Fatalf("second claim: %v", got)
	}
	if c := mustNamespace(t, f, "p").Alarms; c.GetPending() != 1 || c.GetDelivering() != 4 {
		t.Fatalf("counts %v", c)
	}
}

// TestAlarmClaimUsesStamp: an earlier leader's clock ran ahead (log time
// is later than the claiming leader's stamp): a claim leases only what is
// due by its own leader's clock.
func TestAlarmClaimUsesStamp(t *testing.T) {
	f := alarmFSM(t)
	mustApply1(t, f, at(t0, cmdSetAlarm("p", "o", "", t0+500, "", 0)))
	mustApply1(t, f, at(t0+10_000, cmdSetAlarm("p", "other", "", t0+50_000, "", 0))) // log time is now +10 s
	if res := mustApply1(t, f, at(t0+400, cmdClaim("p", 10, 0, "w1"))); len(res.GetAlarms().Alarms) != 0 {
		t.Fatalf("claim stamped +400 leased an alarm due at +500: %v", res.GetAlarms().Alarms)
	}
	res := mustApply1(t, f, at(t0+500, cmdClaim("p", 10, 0, "w1")))
	if got := res.GetAlarms().Alarms; len(got) != 1 || got[0].Record.LeaseExpiresMs != t0+10_000+1000 {
		t.Fatalf("claim stamped +500: %v; want the alarm, leased from log time +10 s", got)
	}
}

func TestAlarmBeginDelivery(t *testing.T) {
	f := alarmFSM(t)
	mustApply(t, f,
		at(t0, cmdSetAlarm("w", "o1", "", t0+100, "x", 0)),
		at(t0, cmdSetAlarm("w", "o2", "", t0+200, "y", 0)),
	)
	res := mustApply1(t, f, at(t0+150, cmdBegin("w", 2000, "leader:n1:3", "o1/", "o2/", "missing/")))
	got := res.GetAlarms().Alarms
	if len(got) != 1 || got[0].Object != "o1" || got[0].Record.Attempt != 1 || got[0].Record.Payload != nil ||
		got[0].Record.LeaseId != fmt.Sprintf("leader:n1:3@%d", res.Revision) || got[0].Record.LeaseExpiresMs != t0+2150 {
		t.Fatalf("begin at +150: %v; want o1 only (o2 not due, missing absent), without payload", got)
	}
	if res := mustApply1(t, f, at(t0+250, cmdBegin("w", 2000, "leader:n1:3", "o1/default", "o2/default"))); len(res.GetAlarms().Alarms) != 1 ||
		res.GetAlarms().Alarms[0].Object != "o2" {
		t.Fatalf("begin at +250: %v; want o2 only (o1 is delivering)", res.GetAlarms().Alarms)
	}
}

func TestAlarmAck(t *testing.T) {
	// claimOne sets alarm o in namespace p (due at t0) and claims it at
	// +10, returning its lease id.
	claimOne := func(t *testing.T, f *FSM, repeatMs int64) string {
		t.Helper()
		mustApply1(t, f, at(t0, cmdSetAlarm("p", "o", "", t0, "pl", repeatMs)))
		res := mustApply1(t, f, at(t0+10, cmdClaim("p", 1, 0, "w")))
		return res.GetAlarms().Alarms[0].Record.LeaseId
	}
	t.Run("done deletes", func(t *testing.T) {
		f := alarmFSM(t)
		lease := claimOne(t, f, 0)
		out := mustApply1(t, f, at(t0+20, cmdAck("p", ack("o", "", lease, ackDone, "")))).GetAck().Outcomes
		if len(out) != 1 || out[0].Status != raftcmdv1.AckStatus_ACK_STATUS_COMPLETED || out[0].Alarm != nil {
			t.Fatalf("outcomes %v", out)
		}
		if _, err := f.Alarm("p", "o", ""); !errors.Is(err, ErrAlarmNotFound) {
			t.Fatalf("alarm after done: %v", err)
		}
	})
	t.Run("done re-arms a repeating alarm", func(t *testing.T) {
		f := alarmFSM(t)
		lease := claimOne(t, f, 1000)
		out := mustApply1(t, f, at(t0+2500, cmdAck("p", ack("o", "", lease, ackDone, "")))).GetAck().Outcomes
		a := mustAlarm(t, f, "p", "o", "")
		if out[0].Status != raftcmdv1.AckStatus_ACK_STATUS_REARMED || a.State != statePending || a.FireAtMs != t0+3000 ||
			a.NextDueMs != t0+3000 || a.Attempt != 0 || a.LeaseId != "" || string(a.Payload) != "pl" {
			t.Fatalf("after done at +2500 of an alarm every 1 s from t0: %v, %v; want pending at +3000", out, a)
		}
	})
	t.Run("retries back off, then dead", func(t *testing.T) {
		f := alarmFSM(t) // p: retry 100 ms, 2 retries
		lease := claimOne(t, f, 0)
		now := int64(t0 + 10)
		for attempt, wantDelay := range []int64{100, 200} {
			now += 50
			out := mustApply1(t, f, at(now, cmdAck("p", ack("o", "", lease, ackRetry, fmt.Sprint("boom ", attempt+1))))).GetAck().Outcomes
			a := mustAlarm(t, f, "p", "o", "")
			if out[0].Status != raftcmdv1.AckStatus_ACK_STATUS_RETRY_SCHEDULED || a.State != statePending || a.NextDueMs != now+wantDelay ||
				a.Attempt != uint32(attempt+1) || a.LastError != fmt.Sprint("boom ", attempt+1) {
				t.Fatalf("after failed attempt %d at %d: %v, %v; want pending at +%d", attempt+1, now, out, a, wantDelay)
			}
			if res := mustApply1(t, f, at(a.NextDueMs-1, cmdClaim("p", 1, 0, "w"))); len(res.GetAlarms().Alarms) != 0 {
				t.Fatal("retry claimed before its backoff passed")
			}
			now = a.NextDueMs
			res := mustApply1(t, f, at(now, cmdClaim("p", 1, 0, "w")))
			lease = res.GetAlarms().Alarms[0].Record.LeaseId
		}
		out := mustApply1(t, f, at(now+1, cmdAck("p", ack("o", "", lease, ackRetry, "final")))).GetAck().Outcomes
		a := mustAlarm(t, f, "p", "o", "")
		if out[0].Status != raftcmdv1.AckStatus_ACK_STATUS_DEAD || a.State != stateDead || a.Attempt != 3 || a.LastError != "final" {
			t.Fatalf("after the third failed attempt (2 retries): %v, %v; want dead", out, a)
		}
		if p, e, _ := f.DueAlarms("p", MaxAlarmFireAtMs, 10); len(p)+len(e) != 0 {
			t.Fatal("a dead alarm is in the due index")
		}
		if c := mustNamespace(t, f, "p").Alarms; c.GetDead() != 1 || c.GetPending() != 0 {
			t.Fatalf("counts %v", c)
		}
		// Setting it again re-arms it.
		mustApply1(t, f, at(now+2, cmdSetAlarm("p", "o", "", now+100, "", 0)))
		if a := mustAlarm(t, f, "p", "o", ""); a.State != statePending || a.Attempt != 0 || a.LastError != "" {
			t.Fatalf("dead alarm set again: %v", a)
		}
	})
	t.Run("requeue gives the attempt back", func(t *testing.T) {
		f := alarmFSM(t)
		lease := claimOne(t, f, 0)
		out := mustApply1(t, f, at(t0+20, cmdAck("p", ack("o", "", lease, ackRequeue, "")))).GetAck().Outcomes
		a := mustAlarm(t, f, "p", "o", "")
		if out[0].Status != raftcmdv1.AckStatus_ACK_STATUS_REQUEUED || a.State != statePending || a.Attempt != 0 || a.NextDueMs != t0 {
			t.Fatalf("after requeue: %v, %v", out, a)
		}
	})
	t.Run("expire only after the lease ran out", func(t *testing.T) {
		f := alarmFSM(t) // lease 1 s: the claim at +10 expires at +1010
		lease := claimOne(t, f, 0)
		mustReject(t, f, at(t0+1009, cmdAck("p", ack("o", "", lease, ackExpire, ""))), ErrStaleAck)
		out := mustApply1(t, f, at(t0+1010, cmdAck("p", ack("o", "", lease, ackExpire, "")))).GetAck().Outcomes
		a := mustAlarm(t, f, "p", "o", "")
		if out[0].Status != raftcmdv1.AckStatus_ACK_STATUS_RETRY_SCHEDULED || a.NextDueMs != t0+1110 || !strings.Contains(a.LastError, "expired") {
			t.Fatalf("after expiry: %v, %v", out, a)
		}
	})
	t.Run("an ack after expiry under the same lease still counts", func(t *testing.T) {
		f := alarmFSM(t)
		lease := claimOne(t, f, 0)
		mustApply1(t, f, at(t0+5000, cmdAck("p", ack("o", "", lease, ackDone, ""))))
	})
	t.Run("stale acks change nothing", func(t *testing.T) {
		f := alarmFSM(t)
		lease := claimOne(t, f, 0)
		err := mustReject(t, f, at(t0+20, cmdAck("p", ack("o", "", "w@999", ackDone, ""))), ErrStaleAck)
		if !strings.Contains(err.Error(), lease) {
			t.Fatalf("stale ack error %q does not name the current lease", err)
		}
		// Set again while delivering: the old lease is stale.
		mustApply1(t, f, at(t0+30, cmdSetAlarm("p", "o", "", t0+10_000, "", 0)))
		mustReject(t, f, at(t0+40, cmdAck("p", ack("o", "", lease, ackDone, ""))), ErrStaleAck)
	})
	t.Run("a batch applies its acks one by one", func(t *testing.T) {
		f := alarmFSM(t)
		lease := claimOne(t, f, 0)
		out := mustApply1(t, f, at(t0+20, cmdAck("p",
			ack("o", "", "w@1", ackDone, ""), ack("o", "", lease, ackRetry, "x"), ack("o", "", lease, ackDone, "")))).GetAck().Outcomes
		if len(out) != 3 || out[0].Status != raftcmdv1.AckStatus_ACK_STATUS_STALE || out[0].Error == "" ||
			out[1].Status != raftcmdv1.AckStatus_ACK_STATUS_RETRY_SCHEDULED || out[2].Status != raftcmdv1.AckStatus_ACK_STATUS_STALE {
			t.Fatalf("outcomes %v", out)
		}
	})
}

func TestAlarmBackoff(t *testing.T) {
	for _, tc := range []struct {
		initial int64
		attempt uint32
		want    int64
	}{{2000, 1, 2000}, {2000, 2, 4000}, {2000, 7, 128000}, {2000, 100, maxAlarmBackoffMs}, {10, 0, 10}} {
		if got := backoffMs(tc.initial, tc.attempt); got != tc.want {
			t.Errorf("backoffMs(%d, %d) = %d, want %d", tc.initial, tc.attempt, got, tc.want)
		}
	}
	for _, tc := range []struct{ fireAt, every, now, want int64 }{
		{1000, 100, 1000, 1100}, {1000, 100, 1099, 1100}, {1000, 100, 1100, 1200}, {1000, 100, 500, 1100}, {1000, 100, 5050, 5100},
	} {
		if got := nextOccurrence(tc.fireAt, tc.every, tc.now); got != tc.want {
			t.Errorf("nextOccurrence(%d, %d, %d) = %d, want %d", tc.fireAt, tc.every, tc.now, got, tc.want)
		}
	}
}

func TestAlarmTxnOps(t *testing.T) {
	f := alarmFSM(t)
	setOp := func(object, name string, fireAt int64) *raftcmdv1.TxnOp {
		return &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_SetAlarm{SetAlarm: &raftcmdv1.AlarmSpec{Object: object, Name: name, FireAtMs: fireAt}}}
	}
	delOp := func(object, name string) *raftcmdv1.TxnOp {
		return &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_DeleteAlarm{DeleteAlarm: &raftcmdv1.AlarmRef{Object: object, Name: name}}}
	}
	// The alarm is set with the state it guards, or not at all.
	r := mustTxn(t, f, at(t0, cmdTxn("p", cmps(cmpExists("o", "lock", raftcmdv1.Relation_RELATION_NOT_EQUAL)),
		ops(opPut("o", "lock", "held"), setOp("o", "expire", t0+1000)), ops(opGet("o", "lock")))))
	if !r.Succeeded || !r.Results[1].GetSetAlarm().Created {
		t.Fatalf("txn: %v", r)
	}
	if a := mustAlarm(t, f, "p", "o", "expire"); a.FireAtMs != t0+1000 {
		t.Fatalf("alarm set in a txn: %v", a)
	}
	r = mustTxn(t, f, at(t0+1, cmdTxn("p", cmps(cmpExists("o", "lock", raftcmdv1.Relation_RELATION_NOT_EQUAL)),
		ops(setOp("o", "expire", t0+9999)), ops(opDel("o", "lock"), delOp("o", "expire")))))
	if r.Succeeded || !r.Results[1].GetDeleteAlarm().Deleted {
		t.Fatalf("txn failure branch: %v", r)
	}
	if _, err := f.Alarm("p", "o", "expire"); !errors.Is(err, ErrAlarmNotFound) {
		t.Fatalf("alarm after the failure branch deleted it: %v", err)
	}
	// A transaction that fails after setting an alarm (over quota) leaves
	// no trace of it.
	mustApply1(t, f, at(t0+2, cmdPutNamespace("q", 10)))
	mustReject(t, f, at(t0+3, cmdTxn("q", nil, ops(setOp("o", "a", t0), opPut("o", "k", "far more than ten bytes")), nil)), ErrQuotaExceeded)
	mustReject(t, f, at(t0+4, cmdTxn("p", nil, ops(setOp("o", "a", 0)), nil)), ErrInvalidArgument)
}

func TestAlarmDeletedWithObjectAndNamespace(t *testing.T) {
	f := alarmFSM(t)
	mustApply(t, f,
		at(t0, cmdPut("p", "keys-and-alarms", "k", "v")),
		at(t0, cmdSetAlarm("p", "keys-and-alarms", "a1", t0, "", 0)),
		at(t0, cmdSetAlarm("p", "keys-and-alarms", "a2", t0+5, "", 0)),
		at(t0, cmdSetAlarm("p", "only-alarms", "", t0, "", 0)),
		at(t0, cmdSetAlarm("p", "keys-and-alarms-2", "", t0, "", 0)),
	)
	mustApply1(t, f, at(t0+1, cmdClaim("p", 1, 0, "w"))) // one is delivering
	res := mustApply1(t, f, at(t0+2, cmdDeleteObject("p", "keys-and-alarms"))).GetDeleteObject()
	if res.DeletedKeys != 1 || res.DeletedAlarms != 2 || !res.Existed {
		t.Fatalf("DeleteObject: %v", res)
	}
	res = mustApply1(t, f, at(t0+3, cmdDeleteObject("p", "only-alarms"))).GetDeleteObject()
	if res.DeletedKeys != 0 || res.DeletedAlarms != 1 || !res.Existed {
		t.Fatalf("DeleteObject of an object with only alarms: %v", res)
	}
	mustAlarmInvariants(t, f)
	// A namespace holding alarms (and no objects) is not empty.
	mustReject(t, f, at(t0+4, cmdDeleteNamespace("p", false)), ErrNamespaceNotEmpty)
	mustApply1(t, f, at(t0+5, cmdDeleteNamespace("p", true)))
	mustApply1(t, f, at(t0+6, cmdAlarmNamespace("p", "", 0, nil, 0)))
	if page, err := f.Alarms("p", AlarmFilter{}, 10, 10); err != nil || len(page.Alarms) != 0 {
		t.Fatalf("alarms of a re-created namespace: %v, %v", page.Alarms, err)
	}
}

func TestAlarmListing(t *testing.T) {
	f := alarmFSM(t)
	objects := []string{"room-2", "room-1", "room-1\x00x", "room-10", "lobby", "room"}
	for i, o := range objects {
		mustApply1(t, f, at(t0, cmdSetAlarm("p", o, "b", t0+int64(i), "pl", 0)))
		mustApply1(t, f, at(t0, cmdSetAlarm("p", o, "a", t0+1000+int64(i), "pl", 0)))
	}
	mustApply1(t, f, at(t0+100, cmdClaim("p", 3, 0, "w"))) // the "b" alarms of room-2, room-1, room-1\x00x
	list := func(filter AlarmFilter, limit, scan int) (string, AlarmPage) {
		t.Helper()
		page, err := f.Alarms("p", filter, limit, scan)
		if err != nil {
			t.Fatalf("Alarms(%+v): %v", filter, err)
		}
		var s []string
		for _, a := range page.Alarms {
			s = append(s, a.Object+"/"+a.Name)
		}
		return strings.Join(s, ","), page
	}
	all := "lobby/a,lobby/b,room/a,room/b,room-1/a,room-1/b,room-1\x00x/a,room-1\x00x/b,room-10/a,room-10/b,room-2/a,room-2/b"
	if got, page := list(AlarmFilter{}, 100, 100); got != all || page.More {
		t.Fatalf("all alarms in (object, name) order:\n got %q\nwant %q", got, all)
	}
	if got, _ := list(AlarmFilter{ObjectPrefix: "room-1"}, 100, 100); got != "room-1/a,room-1/b,room-1\x00x/a,room-1\x00x/b,room-10/a,room-10/b" {
		t.Fatalf("object_prefix room-1: %q", got)
	}
	if got, _ := list(AlarmFilter{Object: "room-1"}, 100, 100); got != "room-1/a,room-1/b" {
		t.Fatalf("object room-1: %q", got)
	}
	if got, _ := list(AlarmFilter{State: stateDelivering, NoPayloads: true}, 100, 100); got != "room-1/b,room-1\x00x/b,room-2/b" {
		t.Fatalf("delivering: %q", got)
	}
	// Pages: by limit, and by scan budget (a filtered page may be short).
	var pages []string
	filter := AlarmFilter{}
	for {
		got, page := list(filter, 5, 100)
		pages = append(pages, got)
		if !page.More {
			break
		}
		filter.After = page.Last
	}
	if strings.Join(pages, ",") != all || len(pages) != 3 {
		t.Fatalf("pages of 5: %q", pages)
	}
	got, page := list(AlarmFilter{State: stateDelivering}, 10, 6)
	if got != "room-1/b" || !page.More || page.Last.Object != "room-1" || page.Last.Name != "b" {
		t.Fatalf("scan budget 6: %q, more %v, last %v", got, page.More, page.Last)
	}
}

// TestAlarmBatchingDeterminism applies the same alarm log one entry per
// batch and all in one batch: the states are identical.
func TestAlarmBatchingDeterminism(t *testing.T) {
	cmds := []*raftcmdv1.Command{
		cmdAlarmNamespace("p", "", 100, u32(1), 1000),
		at(t0, cmdSetAlarm("p", "a", "", t0, "x", 0)),
		at(t0, cmdSetAlarm("p", "b", "", t0+10, "y", 500)),
		at(t0+20, cmdClaim("p", 5, 0, "w")),
		at(t0+30, cmdAck("p", ack("a", "", "w@4", ackRetry, "e"), ack("b", "", "w@4", ackDone, ""))),
		at(t0+200, cmdClaim("p", 5, 0, "w")),
		at(t0+1300, cmdAck("p", ack("a", "", "w@6", ackExpire, ""))),
		at(t0+1400, cmdDeleteObject("p", "b")),
	}
	one := mustNew(t)
	for _, c := range cmds {
		applyCmds(t, one, c)
	}
	all := mustNew(t)
	applyCmds(t, all, cmds...)
	if !bytes.Equal(mustHash(t, one), mustHash(t, all)) {
		t.Fatal("the same log applied in different batches gives different states")
	}
	a := mustAlarm(t, all, "p", "a", "")
	if a.State != stateDead || a.Attempt != 2 {
		t.Fatalf("alarm a: %v; want dead after two failed attempts (1 retry)", a)
	}
	mustAlarmInvariants(t, all)
}

func TestAlarmRequestReplay(t *testing.T) {
	f := alarmFSM(t)
	mustApply1(t, f, at(t0, cmdSetAlarm("p", "o", "", t0, "", 0)))
	claim := at(t0+1, cmdClaim("p", 1, 0, "w"))
	claim.RequestId = "claim-1"
	first := mustApply1(t, f, claim)
	again := proto.Clone(claim).(*raftcmdv1.Command)
	again.TimeUnixMs = t0 + 2
	second := applyCmds(t, f, again)[0].Result
	if !second.Replayed || !proto.Equal(first.GetAlarms(), second.GetAlarms()) {
		t.Fatalf("a retried claim: %v, first %v; want the first answer replayed", second, first)
	}
}

func TestAlarmSnapshotRestore(t *testing.T) {
	f := alarmFSM(t)
	mustApply(t, f, at(t0, cmdSetAlarm("p", "o", "", t0, "x", 0)), at(t0, cmdSetAlarm("w", "o", "n", t0+5, "y", 1000)))
	mustApply1(t, f, at(t0+1, cmdClaim("p", 1, 0, "w")))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	g := mustNew(t)
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustHash(t, f), mustHash(t, g)) {
		t.Fatal("restored state differs")
	}
	if a := mustAlarm(t, g, "p", "o", ""); a.State != stateDelivering {
		t.Fatalf("restored alarm %v", a)
	}
	mustAlarmInvariants(t, g)
}

// TestAlarmFireIn: a relative fire time counts from the command's stamp
// (the proposing leader's clock), and both forms at once are refused.
func TestAlarmFireIn(t *testing.T) {
	f := alarmFSM(t)
	in := int64(1500)
	c := at(t0, cmdSetAlarm("p", "o", "", 0, "", 0))
	c.GetSetAlarm().Alarm.FireInMs = &in
	r := mustApply1(t, f, c).GetAlarm()
	if r.Alarm.Record.FireAtMs != t0+1500 || mustAlarm(t, f, "p", "o", "").NextDueMs != t0+1500 {
		t.Fatalf("fire_in 1.5 s at t0: %v", r)
	}
	both := at(t0, cmdSetAlarm("p", "o", "", t0, "", 0))
	both.GetSetAlarm().Alarm.FireInMs = &in
	mustReject(t, f, both, ErrInvalidArgument)
	mustReject(t, f, at(t0, cmdSetAlarm("p", "o", "", 0, "", 0)), ErrInvalidArgument)
}
