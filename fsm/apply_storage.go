package fsm

import (
	"fmt"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
)

// validateObject checks an object address and returns its namespace.
func (a *applier) validateObject(ns, name string) (*raftcmdv1.Namespace, error) {
	if err := ValidateNamespace(ns); err != nil {
		return nil, err
	}
	if err := ValidateObjectName(name); err != nil {
		return nil, err
	}
	return getNamespace(a.tx, ns)
}

func (a *applier) applyBatchWrite(w *raftcmdv1.BatchWrite) (*raftcmdv1.Result, error) {
	ns, err := a.validateObject(w.GetNamespace(), w.GetObject())
	if err != nil {
		return nil, err
	}
	if err := validateBatch(w); err != nil {
		return nil, err
	}
	shard := ShardOf(w.Namespace, w.Object)
	sb := a.tx.Bucket(shardBuckets[shard])
	okey := objectKey(w.Namespace, w.Object)
	var obj objectRecord
	existed := false
	if v := sb.Get(okey); v != nil {
		if obj, err = decodeObjectRecord(v); err != nil {
			panic(err)
		}
		existed = true
	}

	// Check phase: work out the object's new size without writing.
	prefix := keyPrefix(w.Namespace, w.Object)
	fullKey := func(k string) []byte { return append(prefix[:len(prefix):len(prefix)], k...) }
	newBytes, newKeys := int64(obj.bytes), int64(obj.keys)
	var deleted, created uint32
	for _, k := range w.Deletes {
		if v := sb.Get(fullKey(k)); v != nil {
			rec, err := decodeKeyRecord(v)
			if err != nil {
				panic(err)
			}
			newBytes -= int64(len(k) + len(rec.value))
			newKeys--
			deleted++
		}
	}
	old := make([]*keyRecord, len(w.Puts))
	for i, p := range w.Puts {
		if v := sb.Get(fullKey(p.Key)); v != nil {
			rec, err := decodeKeyRecord(v)
			if err != nil {
				panic(err)
			}
			old[i] = &rec
			newBytes += int64(len(p.Value) - len(rec.value))
		} else {
			newBytes += int64(len(p.Key) + len(p.Value))
			newKeys++
			created++
		}
	}
	quota := ns.GetSettings().GetMaxObjectBytes()
	if quota > 0 && uint64(newBytes) > quota && newBytes > int64(obj.bytes) {
		return nil, fmt.Errorf("%w: object %q would hold %d bytes, namespace %q allows %d per object (max_object_bytes)",
			ErrQuotaExceeded, w.Object, newBytes, ns.Name, quota)
	}
	if deleted == 0 && len(w.Puts) == 0 {
		return batchResult(0, 0), nil // nothing to change
	}

	// Write phase.
	for _, k := range w.Deletes {
		must(sb.Delete(fullKey(k)))
	}
	for i, p := range w.Puts {
		rec := keyRecord{encoding: p.Encoding, createRevision: a.index, modRevision: a.index, value: p.Value}
		if old[i] != nil {
			rec.createRevision = old[i].createRevision
		}
		must(sb.Put(fullKey(p.Key), rec.encode()))
	}
	stat := readShardStat(sb)
	stat.bytes = uint64(int64(stat.bytes) + newBytes - int64(obj.bytes))
	switch {
	case newKeys == 0 && existed:
		a.forgetObject(ns, w.Object, sb, okey)
		stat.objects--
	case newKeys > 0:
		if !existed {
			obj.createRevision = a.index
			must(a.tx.Bucket(bucketObjects).Put(indexKey(w.Namespace, w.Object), []byte{shard}))
			ns.ObjectCount++
			putNamespace(a.tx, ns)
			stat.objects++
		}
		obj.revision, obj.keys, obj.bytes = a.index, uint64(newKeys), uint64(newBytes)
		must(sb.Put(okey, obj.encode()))
	}
	must(sb.Put(shardStatKey, stat.encode()))
	return batchResult(created, deleted), nil
}

func batchResult(created, deleted uint32) *raftcmdv1.Result {
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_BatchWrite{
		BatchWrite: &raftcmdv1.BatchWriteResult{Created: created, Deleted: deleted},
	}}
}

// validateBatch checks keys, encodings and that no key appears twice.
func validateBatch(w *raftcmdv1.BatchWrite) error {
	seen := make(map[string]string, len(w.Puts)+len(w.Deletes)) // membership only; never iterated
	for i, k := range w.Deletes {
		if err := ValidateKey(fmt.Sprintf("deletes[%d]", i), k); err != nil {
			return err
		}
		if seen[k] != "" {
			return fmt.Errorf("%w: deletes[%d]: key %q appears twice in the batch", ErrInvalidArgument, i, k)
		}
		seen[k] = "delete"
	}
	for i, p := range w.Puts {
		if err := ValidateKey(fmt.Sprintf("puts[%d].key", i), p.GetKey()); err != nil {
			return err
		}
		if seen[p.Key] != "" {
			return fmt.Errorf("%w: puts[%d]: key %q appears twice in the batch", ErrInvalidArgument, i, p.Key)
		}
		seen[p.Key] = "put"
		if p.Encoding != raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY && p.Encoding != raftcmdv1.ValueEncoding_VALUE_ENCODING_JSON {
			return fmt.Errorf("%w: puts[%d]: unknown value encoding %d", ErrInvalidArgument, i, p.Encoding)
		}
	}
	return nil
}

func (a *applier) applyDeleteObject(d *raftcmdv1.DeleteObject) (*raftcmdv1.Result, error) {
	if _, err := a.validateObject(d.GetNamespace(), d.GetObject()); err != nil {
		return nil, err
	}
	shard := ShardOf(d.Namespace, d.Object)
	if a.tx.Bucket(shardBuckets[shard]).Get(objectKey(d.Namespace, d.Object)) == nil {
		return &raftcmdv1.Result{Result: &raftcmdv1.Result_DeleteObject{DeleteObject: &raftcmdv1.DeleteObjectResult{}}}, nil
	}
	n := a.deleteObjectData(d.Namespace, d.Object, shard)
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_DeleteObject{
		DeleteObject: &raftcmdv1.DeleteObjectResult{DeletedKeys: n, Existed: true},
	}}, nil
}

// deleteObjectData deletes every key of object (ns, name), its record, its
// index entry, and updates the shard's and the namespace's counts. It
// returns the number of keys deleted.
func (a *applier) deleteObjectData(nsName, name string, shard uint8) uint64 {
	sb := a.tx.Bucket(shardBuckets[shard])
	okey := objectKey(nsName, name)
	v := sb.Get(okey)
	if v == nil {
		panic(fmt.Sprintf("fsm: index names object %q/%q but shard %d has no record", nsName, name, shard))
	}
	obj, err := decodeObjectRecord(v)
	if err != nil {
		panic(err)
	}
	prefix := keyPrefix(nsName, name)
	var n uint64
	c := sb.Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		must(c.Delete())
		n++
	}
	ns, err := getNamespace(a.tx, nsName)
	if err != nil {
		panic(err)
	}
	a.forgetObject(ns, name, sb, okey)
	stat := readShardStat(sb)
	stat.objects--
	stat.bytes -= obj.bytes
	must(sb.Put(shardStatKey, stat.encode()))
	return n
}

// forgetObject removes an object's record and index entry and decrements
// its namespace's object count.
func (a *applier) forgetObject(ns *raftcmdv1.Namespace, name string, sb *bolt.Bucket, okey []byte) {
	must(sb.Delete(okey))
	must(a.tx.Bucket(bucketObjects).Delete(indexKey(ns.Name, name)))
	ns.ObjectCount--
	putNamespace(a.tx, ns)
}

func readShardStat(sb *bolt.Bucket) shardStat {
	s, err := decodeShardStat(sb.Get(shardStatKey))
	if err != nil {
		panic(err)
	}
	return s
}
