package fsm

import (
	"bytes"
	"fmt"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// KeyValue is one stored key as queries return it. Value is a copy owned
// by the caller.
type KeyValue struct {
	Key            string
	Value          []byte
	Encoding       raftcmdv1.ValueEncoding
	CreateRevision uint64
	ModRevision    uint64
}

// ObjectInfo summarizes one object.
type ObjectInfo struct {
	Name           string
	Revision       uint64
	CreateRevision uint64
	Keys           uint64
	Bytes          uint64
	Shard          uint8
	// Alarms counts the object's alarms. An object with alarms and no
	// keys has only this (and its shard).
	Alarms uint64
}

// ShardStat is one virtual shard's object count, key count and bytes.
type ShardStat struct {
	Shard   uint8
	Objects uint64
	Keys    uint64
	Bytes   uint64
}

// Namespace returns namespace name.
func (f *FSM) Namespace(name string) (*raftcmdv1.Namespace, error) {
	var ns *raftcmdv1.Namespace
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		ns, err = getNamespace(tx, name)
		return err
	})
	return ns, err
}

// Namespaces returns every namespace in name order.
func (f *FSM) Namespaces() ([]*raftcmdv1.Namespace, error) {
	var out []*raftcmdv1.Namespace
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNamespaces).ForEach(func(k, v []byte) error {
			ns := &raftcmdv1.Namespace{}
			if err := proto.Unmarshal(v, ns); err != nil {
				return fmt.Errorf("fsm: namespace %q: %w", k, err)
			}
			out = append(out, ns)
			return nil
		})
	})
	return out, err
}

// PollNamespaces returns every namespace in name order, as Namespaces,
// without committing the batches that wait in the write transaction: for
// a caller that polls at a steady pace whatever the load (the leader's
// alarm scheduler, every 20 ms), whose queries would otherwise commit the
// leader's batches at that pace. While batches wait, the records are
// copied under the writer's lock (applies wait meanwhile) and decoded
// after it.
func (f *FSM) PollNamespaces() ([]*raftcmdv1.Namespace, error) {
	var raw [][]byte
	err := f.viewApplied(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNamespaces).ForEach(func(_, v []byte) error {
			raw = append(raw, bytes.Clone(v))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	out := make([]*raftcmdv1.Namespace, len(raw))
	for i, v := range raw {
		out[i] = &raftcmdv1.Namespace{}
		if err := proto.Unmarshal(v, out[i]); err != nil {
			return nil, fmt.Errorf("fsm: namespace record %d: %w", i, err)
		}
	}
	return out, nil
}

// Members returns the recorded cluster members in id order.
func (f *FSM) Members() ([]*raftcmdv1.Member, error) {
	var out []*raftcmdv1.Member
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			m := &raftcmdv1.Member{}
			if err := proto.Unmarshal(v, m); err != nil {
				return fmt.Errorf("fsm: member %q: %w", k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// objectView runs fn with the shard bucket and key prefix of object (ns,
// name) after checking that the namespace exists.
func (f *FSM) objectView(ns, name string, fn func(sb *bolt.Bucket, prefix []byte) error) error {
	return f.view(func(tx *bolt.Tx) error {
		if err := checkNamespace(tx, ns); err != nil {
			return err
		}
		return fn(tx.Bucket(shardBuckets[ShardOf(ns, name)]), keyPrefix(ns, name))
	})
}

// Get returns one key of object (ns, name).
func (f *FSM) Get(ns, name, key string) (KeyValue, error) {
	var kv KeyValue
	err := f.objectView(ns, name, func(sb *bolt.Bucket, prefix []byte) error {
		v := sb.Get(append(prefix, key...))
		if v == nil {
			return fmt.Errorf("%w: %q", ErrKeyNotFound, key)
		}
		var err error
		kv, err = toKeyValue(key, v, false)
		return err
	})
	return kv, err
}

// BatchGet returns the keys of object (ns, name) that exist, in the order
// asked for.
func (f *FSM) BatchGet(ns, name string, keys []string) ([]KeyValue, error) {
	var out []KeyValue
	err := f.objectView(ns, name, func(sb *bolt.Bucket, prefix []byte) error {
		for _, k := range keys {
			v := sb.Get(append(prefix[:len(prefix):len(prefix)], k...))
			if v == nil {
				continue
			}
			kv, err := toKeyValue(k, v, false)
			if err != nil {
				return err
			}
			out = append(out, kv)
		}
		return nil
	})
	return out, err
}

func toKeyValue(key string, v []byte, keysOnly bool) (KeyValue, error) {
	rec, err := decodeKeyRecord(v)
	if err != nil {
		return KeyValue{}, err
	}
	kv := KeyValue{Key: key, Encoding: rec.encoding, CreateRevision: rec.createRevision, ModRevision: rec.modRevision}
	if !keysOnly {
		kv.Value = bytes.Clone(rec.value)
		if kv.Value == nil {
			kv.Value = []byte{}
		}
	}
	return kv, nil
}

// Range selects keys for List: those in [Lo, Hi) (Lo exclusive when
// LoExclusive; Hi unbounded when empty), walked upward or, with Reverse,
// downward.
type Range struct {
	Lo          string
	LoExclusive bool
	Hi          string
	Reverse     bool
	// Limit is the most keys to return; must be positive.
	Limit int
	// MaxBytes ends the page early rather than let the keys and values
	// returned pass this many bytes (a first key larger than it is still
	// returned alone); 0 means no byte bound.
	MaxBytes int
	// KeysOnly leaves values out.
	KeysOnly bool
}

// List returns the keys of object (ns, name) in r, and whether more keys
// in r follow the last one returned.
func (f *FSM) List(ns, name string, r Range) ([]KeyValue, bool, error) {
	if r.Limit <= 0 {
		return nil, false, fmt.Errorf("%w: limit must be positive", ErrInvalidArgument)
	}
	var out []KeyValue
	more := false
	err := f.objectView(ns, name, func(sb *bolt.Bucket, prefix []byte) error {
		var err error
		out, more, err = listRange(sb.Cursor(), prefix, r)
		return err
	})
	return out, more, err
}

func step(c *bolt.Cursor, reverse bool) ([]byte, []byte) {
	if reverse {
		return c.Prev()
	}
	return c.Next()
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil if there is none.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// PrefixEnd returns the smallest string greater than every string with
// prefix p, or "" if there is none.
func PrefixEnd(p string) string { return string(prefixEnd([]byte(p))) }

// Object returns object (ns, name)'s info.
func (f *FSM) Object(ns, name string) (ObjectInfo, error) {
	var info ObjectInfo
	err := f.view(func(tx *bolt.Tx) error {
		if err := checkNamespace(tx, ns); err != nil {
			return err
		}
		shard := ShardOf(ns, name)
		sb := tx.Bucket(shardBuckets[shard])
		alarms := countObjectAlarms(sb, ns, name)
		v := sb.Get(objectKey(ns, name))
		if v == nil {
			if alarms > 0 {
				info = ObjectInfo{Name: name, Shard: shard, Alarms: alarms}
				return nil
			}
			return fmt.Errorf("%w: %q", ErrObjectNotFound, name)
		}
		var err error
		info, err = toObjectInfo(name, shard, v)
		info.Alarms = alarms
		return err
	})
	return info, err
}

func toObjectInfo(name string, shard uint8, v []byte) (ObjectInfo, error) {
	o, err := decodeObjectRecord(v)
	if err != nil {
		return ObjectInfo{}, err
	}
	return ObjectInfo{Name: name, Revision: o.revision, CreateRevision: o.createRevision, Keys: o.keys, Bytes: o.bytes, Shard: shard}, nil
}

// Objects returns up to limit objects of namespace ns whose names start
// with prefix and sort after after (all when after is empty), in name
// order, and whether more follow.
func (f *FSM) Objects(ns, prefix, after string, limit int) ([]ObjectInfo, bool, error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("%w: limit must be positive", ErrInvalidArgument)
	}
	var out []ObjectInfo
	more := false
	err := f.view(func(tx *bolt.Tx) error {
		if err := checkNamespace(tx, ns); err != nil {
			return err
		}
		base := indexKey(ns, "")
		p := indexKey(ns, prefix)
		c := tx.Bucket(bucketObjects).Cursor()
		start := p
		if after != "" && after >= prefix {
			start = indexKey(ns, after)
		}
		k, v := c.Seek(start)
		if after != "" && k != nil && bytes.Equal(k, start) && after >= prefix {
			k, v = c.Next()
		}
		for ; k != nil && hasPrefix(k, p); k, v = c.Next() {
			if len(out) == limit {
				more = true
				break
			}
			name := string(k[len(base):])
			shard := v[0]
			rec := tx.Bucket(shardBuckets[shard]).Get(objectKey(ns, name))
			if rec == nil {
				return fmt.Errorf("fsm: index names object %q but shard %d has no record", name, shard)
			}
			info, err := toObjectInfo(name, shard, rec)
			if err != nil {
				return err
			}
			info.Alarms = countObjectAlarms(tx.Bucket(shardBuckets[shard]), ns, name)
			out = append(out, info)
		}
		return nil
	})
	return out, more, err
}

// ShardStats returns every shard's object count and bytes, in shard order.
func (f *FSM) ShardStats() ([]ShardStat, error) {
	out := make([]ShardStat, 0, NumShards)
	err := f.view(func(tx *bolt.Tx) error {
		for i, name := range shardBuckets {
			s, err := decodeShardStat(tx.Bucket(name).Get(shardStatKey))
			if err != nil {
				return err
			}
			out = append(out, ShardStat{Shard: uint8(i), Objects: s.objects, Keys: s.keys, Bytes: s.bytes})
		}
		return nil
	})
	return out, err
}

// Now returns the FSM's log time in unix milliseconds: the largest time
// stamp of any applied command.
func (f *FSM) Now() int64 {
	var now int64
	_ = f.view(func(tx *bolt.Tx) error {
		now = int64(readU64(tx.Bucket(bucketMeta).Get(metaNow)))
		return nil
	})
	return now
}
