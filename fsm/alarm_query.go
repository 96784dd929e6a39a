package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
)

// Alarm returns alarm name (DefaultAlarmName when empty) of object (ns,
// object).
func (f *FSM) Alarm(ns, object, name string) (*raftcmdv1.StoredAlarm, error) {
	name = AlarmName(name)
	var out *raftcmdv1.StoredAlarm
	err := f.view(func(tx *bolt.Tx) error {
		if err := checkNamespace(tx, ns); err != nil {
			return err
		}
		v := tx.Bucket(shardBuckets[ShardOf(ns, object)]).Get(alarmKey(ns, object, name))
		if v == nil {
			return fmt.Errorf("%w: alarm %q of object %q", ErrAlarmNotFound, name, object)
		}
		out = &raftcmdv1.StoredAlarm{Object: object, Name: name, Record: decodeAlarm(v)}
		return nil
	})
	return out, err
}

// AlarmFilter selects the alarms Alarms lists.
type AlarmFilter struct {
	// State keeps alarms in this state; unspecified keeps all.
	State raftcmdv1.AlarmState
	// Object, when set, keeps only that object's alarms; ObjectPrefix
	// those of objects whose names start with it.
	Object       string
	ObjectPrefix string
	// After, when set, starts the listing after this alarm (a page's
	// Last).
	After *raftcmdv1.AlarmRef
	// NoPayloads leaves payloads out.
	NoPayloads bool
}

// AlarmPage is one page of Alarms.
type AlarmPage struct {
	Alarms []*raftcmdv1.StoredAlarm
	// More is set when the listing has not reached its end; Last is the
	// last alarm examined (pass it as AlarmFilter.After to continue).
	More bool
	Last *raftcmdv1.AlarmRef
}

// Alarms lists namespace ns's alarms in (object, name) order: up to limit
// that pass filter, examining at most scan alarms (a state filter may
// skip many), and says where to continue.
func (f *FSM) Alarms(ns string, filter AlarmFilter, limit, scan int) (AlarmPage, error) {
	var page AlarmPage
	if limit <= 0 || scan <= 0 {
		return page, fmt.Errorf("%w: limit must be positive", ErrInvalidArgument)
	}
	base := appendLP(nil, ns)
	prefix := appendEscaped(bytes.Clone(base), filter.ObjectPrefix)
	if filter.Object != "" {
		prefix = append(appendEscaped(bytes.Clone(base), filter.Object), escapeTerminal)
	}
	err := f.view(func(tx *bolt.Tx) error {
		if err := checkNamespace(tx, ns); err != nil {
			return err
		}
		c := tx.Bucket(bucketAlarms).Cursor()
		start := prefix
		if filter.After != nil {
			start = alarmIndexKey(ns, filter.After.Object, filter.After.Name)
		}
		k, _ := c.Seek(start)
		if filter.After != nil && k != nil && bytes.Equal(k, start) {
			k, _ = c.Next()
		}
		for examined := 0; k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
			if len(page.Alarms) == limit || examined == scan {
				page.More = true
				return nil
			}
			if filter.Object != "" && k[len(prefix)] == escapeByte {
				break // an escaped 0x00 inside a longer object name: names never start with 0xff
			}
			examined++
			object, name, err := parseAlarmIndexKey(k[len(base):])
			if err != nil {
				return err
			}
			page.Last = &raftcmdv1.AlarmRef{Object: object, Name: name}
			v := tx.Bucket(shardBuckets[ShardOf(ns, object)]).Get(alarmKey(ns, object, name))
			if v == nil {
				return fmt.Errorf("fsm: alarm index names %q/%q but it has no record", object, name)
			}
			rec := decodeAlarm(v)
			if filter.State != raftcmdv1.AlarmState_ALARM_STATE_UNSPECIFIED && rec.State != filter.State {
				continue
			}
			if filter.NoPayloads {
				rec.Payload = nil
			}
			page.Alarms = append(page.Alarms, &raftcmdv1.StoredAlarm{Object: object, Name: name, Record: rec})
		}
		return nil
	})
	if !page.More {
		page.Last = nil
	}
	return page, err
}

// DueAlarms returns, for the leader's scheduler, up to limit pending
// alarms of namespace ns whose next attempt is due at or before nowMs, and
// up to limit delivering ones whose lease expired at or before nowMs,
// each earliest first. Payloads are left out.
func (f *FSM) DueAlarms(ns string, nowMs int64, limit int) (pending, expired []*raftcmdv1.StoredAlarm, err error) {
	// Most polls find nothing due (alarms set ahead, leases running): that
	// is told from the applied state without committing the batches that
	// wait in the write transaction, two seeks under the writer's lock
	// (PollNamespaces).
	var due bool
	if err := f.viewApplied(func(tx *bolt.Tx) error {
		due = dueBy(tx, ns, duePending, nowMs) || dueBy(tx, ns, dueLeased, nowMs)
		return nil
	}); err != nil || !due {
		return nil, nil, err
	}
	err = f.view(func(tx *bolt.Tx) error {
		var err error
		if pending, err = dueScan(tx, ns, duePending, nowMs, limit); err != nil {
			return err
		}
		expired, err = dueScan(tx, ns, dueLeased, nowMs, limit)
		return err
	})
	return pending, expired, err
}

// LeasedAlarms returns up to limit delivering alarms of namespace ns,
// earliest lease expiry first, without payloads: what a new leader looks
// at to take over its predecessor's deliveries.
func (f *FSM) LeasedAlarms(ns string, limit int) ([]*raftcmdv1.StoredAlarm, error) {
	var out []*raftcmdv1.StoredAlarm
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		out, err = dueScan(tx, ns, dueLeased, math.MaxInt64, limit)
		return err
	})
	return out, err
}

// NextAlarmDue returns the earliest time at which a pending alarm of
// namespace ns is due, and false when it has none.
func (f *FSM) NextAlarmDue(ns string) (int64, bool) {
	var due int64
	found := false
	_ = f.view(func(tx *bolt.Tx) error {
		due, found = firstDue(tx, ns, duePending)
		return nil
	})
	return due, found
}

// firstDue returns the earliest time in the due index of ns under kind,
// and whether there is one.
func firstDue(tx *bolt.Tx, ns string, kind byte) (int64, bool) {
	prefix := append(appendLP(nil, ns), kind)
	k, _ := tx.Bucket(bucketAlarmDue).Cursor().Seek(prefix)
	if k == nil || !hasPrefix(k, prefix) || len(k) < len(prefix)+8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(k[len(prefix):])), true
}

// dueBy reports whether the due index of ns under kind holds an alarm
// whose time is at or before t.
func dueBy(tx *bolt.Tx, ns string, kind byte, t int64) bool {
	due, ok := firstDue(tx, ns, kind)
	return ok && due <= t
}

// dueScan reads up to limit alarms of the due index of ns under kind
// whose time is at or before t.
func dueScan(tx *bolt.Tx, ns string, kind byte, t int64, limit int) ([]*raftcmdv1.StoredAlarm, error) {
	prefix := append(appendLP(nil, ns), kind)
	var out []*raftcmdv1.StoredAlarm
	c := tx.Bucket(bucketAlarmDue).Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
		if len(k) < len(prefix)+8 || int64(binary.BigEndian.Uint64(k[len(prefix):])) > t {
			break
		}
		object, name, err := parseDueRef(k[len(prefix)+8:])
		if err != nil {
			return nil, err
		}
		v := tx.Bucket(shardBuckets[ShardOf(ns, object)]).Get(alarmKey(ns, object, name))
		if v == nil {
			return nil, fmt.Errorf("fsm: due index names %q/%q but it has no record", object, name)
		}
		rec := decodeAlarm(v)
		rec.Payload = nil
		out = append(out, &raftcmdv1.StoredAlarm{Object: object, Name: name, Record: rec})
	}
	return out, nil
}

// countObjectAlarms counts object (ns, object)'s alarms in its shard
// bucket sb.
func countObjectAlarms(sb *bolt.Bucket, ns, object string) uint64 {
	prefix := alarmObjectPrefix(ns, object)
	var n uint64
	c := sb.Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}
