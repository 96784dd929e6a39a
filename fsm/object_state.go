package fsm

import (
	"bytes"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
)

// objState is one object as a command reads and changes it. A command
// changes keys through putKey and deleteKey, then finishObjects writes the
// objects' records, the index, the shard stats and the namespace's object
// count, and enforces the quota.
type objState struct {
	name       string
	shard      uint8
	sb         *bolt.Bucket
	okey       []byte
	prefix     []byte
	rec        objectRecord
	existed    bool
	startBytes uint64
	startKeys  uint64
	changed    bool
}

// object returns the state of object name in namespace ns, loading it on
// first use within the command.
func (a *applier) object(ns *raftcmdv1.Namespace, name string) *objState {
	if a.ns == nil {
		a.ns = ns
	}
	for _, o := range a.objects {
		if o.name == name {
			return o
		}
	}
	shard := ShardOf(ns.Name, name)
	o := &objState{
		name: name, shard: shard, sb: a.tx.Bucket(shardBuckets[shard]),
		okey: objectKey(ns.Name, name), prefix: keyPrefix(ns.Name, name),
	}
	if v := o.sb.Get(o.okey); v != nil {
		rec, err := decodeObjectRecord(v)
		if err != nil {
			panic(err)
		}
		o.rec, o.existed, o.startBytes, o.startKeys = rec, true, rec.bytes, rec.keys
	}
	a.objects = append(a.objects, o)
	return o
}

func (o *objState) fullKey(k string) []byte {
	return append(o.prefix[:len(o.prefix):len(o.prefix)], k...)
}

// get returns key k's record. The value aliases the database: copy it
// before it outlives the next write.
func (o *objState) get(k string) (keyRecord, bool) {
	v := o.sb.Get(o.fullKey(k))
	if v == nil {
		return keyRecord{}, false
	}
	rec, err := decodeKeyRecord(v)
	if err != nil {
		panic(err)
	}
	return rec, true
}

// putKey stores value under k and reports whether k was created.
func (a *applier) putKey(o *objState, k string, value []byte, enc raftcmdv1.ValueEncoding) bool {
	rec := keyRecord{encoding: enc, createRevision: a.index, modRevision: a.index, value: value}
	old, found := o.get(k)
	if found {
		rec.createRevision = old.createRevision
		o.rec.bytes = o.rec.bytes - uint64(len(old.value)) + uint64(len(value))
	} else {
		o.rec.bytes += uint64(len(k) + len(value))
		o.rec.keys++
	}
	a.put(o.sb, o.fullKey(k), rec.encode())
	o.changed = true
	a.emit(Event{Type: EventPut, Object: o.name, Key: k, Value: value, Encoding: enc, CreateRevision: rec.createRevision})
	return !found
}

// deleteKey deletes k and reports whether it existed.
func (a *applier) deleteKey(o *objState, k string) bool {
	old, found := o.get(k)
	if !found {
		return false
	}
	o.rec.bytes -= uint64(len(k) + len(old.value))
	o.rec.keys--
	a.delete(o.sb, o.fullKey(k))
	o.changed = true
	a.emit(Event{Type: EventDelete, Object: o.name, Key: k})
	return true
}

// keysInRange returns the keys of o in r (no limit), for deletion.
func (o *objState) keysInRange(r Range) []string {
	var out []string
	walkRange(o.sb.Cursor(), o.prefix, r, func(k, _ []byte) bool {
		out = append(out, string(k[len(o.prefix):]))
		return true
	})
	return out
}

// finishObjects checks the quota of every object the command grew, then
// writes their records, index entries, shard stats and the namespace's
// object count. A quota error comes after keys were written (a
// transaction's; a batch write's is found before, checkBatchQuota): the
// transaction's writes are taken back from its undo log. Past the check
// the command can no longer be refused, and its undo log ends.
func (a *applier) finishObjects() error {
	if a.ns == nil {
		return nil
	}
	quota := a.ns.GetSettings().GetMaxObjectBytes()
	for _, o := range a.objects {
		if err := quotaError(a.ns, o, o.rec.bytes, quota); err != nil {
			return err
		}
	}
	a.undo = nil
	nsChanged := false
	for _, o := range a.objects {
		if !o.changed || !o.existed && o.rec.keys == 0 {
			continue // untouched, or created and emptied again: nothing to record
		}
		stat := readShardStat(o.sb)
		stat.bytes = stat.bytes - o.startBytes + o.rec.bytes
		stat.keys = stat.keys - o.startKeys + o.rec.keys
		switch {
		case o.rec.keys == 0 && o.existed:
			a.delete(o.sb, o.okey)
			a.delete(a.tx.Bucket(bucketObjects), indexKey(a.ns.Name, o.name))
			a.ns.ObjectCount--
			stat.objects--
			nsChanged = true
		case o.rec.keys > 0:
			if !o.existed {
				o.rec.createRevision = a.index
				a.put(a.tx.Bucket(bucketObjects), indexKey(a.ns.Name, o.name), []byte{o.shard})
				a.ns.ObjectCount++
				stat.objects++
				nsChanged = true
			}
			o.rec.revision = a.index
			a.put(o.sb, o.okey, o.rec.encode())
		}
		a.put(o.sb, shardStatKey, stat.encode())
	}
	if nsChanged {
		a.putNamespace(a.ns)
	}
	return nil
}

// walkRange calls fn for each key of the object with key prefix prefix in
// r, in r's direction, until fn returns false. Keys passed to fn are full
// database keys.
func walkRange(c *bolt.Cursor, prefix []byte, r Range, fn func(k, v []byte) bool) {
	lo := append(prefix[:len(prefix):len(prefix)], r.Lo...)
	var hi []byte
	if r.Hi != "" {
		hi = append(prefix[:len(prefix):len(prefix)], r.Hi...)
	}
	inRange := func(k []byte) bool {
		if k == nil || !hasPrefix(k, prefix) {
			return false
		}
		c := bytes.Compare(k, lo)
		if c < 0 || c == 0 && r.LoExclusive {
			return false
		}
		return hi == nil || bytes.Compare(k, hi) < 0
	}
	var k, v []byte
	if !r.Reverse {
		k, v = c.Seek(lo)
		if k != nil && r.LoExclusive && bytes.Equal(k, lo) {
			k, v = c.Next()
		}
	} else {
		end := hi
		if end == nil {
			end = prefixEnd(prefix)
		}
		if end != nil {
			k, _ = c.Seek(end)
		}
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	for ; inRange(k); k, v = step(c, r.Reverse) {
		if !fn(k, v) {
			return
		}
	}
}

// listRange returns up to r.Limit keys of the object in r (stopping early
// at r.MaxBytes) and whether more follow.
func listRange(c *bolt.Cursor, prefix []byte, r Range) ([]KeyValue, bool, error) {
	var out []KeyValue
	more := false
	size := 0
	var err error
	walkRange(c, prefix, r, func(k, v []byte) bool {
		if len(out) == r.Limit {
			more = true
			return false
		}
		var kv KeyValue
		if kv, err = toKeyValue(string(k[len(prefix):]), v, r.KeysOnly); err != nil {
			return false
		}
		// A page never passes MaxBytes unless its first key alone does.
		if n := len(kv.Key) + len(kv.Value); len(out) > 0 && r.MaxBytes > 0 && size+n > r.MaxBytes {
			more = true
			return false
		}
		size += len(kv.Key) + len(kv.Value)
		out = append(out, kv)
		return true
	})
	return out, more, err
}

func readShardStat(sb *bolt.Bucket) shardStat {
	s, err := decodeShardStat(sb.Get(shardStatKey))
	if err != nil {
		panic(err)
	}
	return s
}
