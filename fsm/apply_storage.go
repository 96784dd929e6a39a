package fsm

import (
	"fmt"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
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
	o := a.object(ns, w.Object)
	if err := a.checkBatchQuota(o, w); err != nil {
		return nil, err
	}
	var created, deleted uint32
	for _, k := range w.Deletes {
		if a.deleteKey(o, k) {
			deleted++
		}
	}
	for _, p := range w.Puts {
		if a.putKey(o, p.Key, p.Value, p.Encoding) {
			created++
		}
	}
	if err := a.finishObjects(); err != nil {
		return nil, err
	}
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_BatchWrite{
		BatchWrite: &raftcmdv1.BatchWriteResult{Created: created, Deleted: deleted},
	}}, nil
}

// checkBatchQuota refuses, before anything is written, a batch write that
// would take its object past the namespace's quota, as finishObjects
// would after writing it: a refusal there, without an undo log, rolls back
// the write transaction and applies again every batch it held, which a
// client writing to a full object again and again would make every
// replica do for each of its writes.
func (a *applier) checkBatchQuota(o *objState, w *raftcmdv1.BatchWrite) error {
	quota := a.ns.GetSettings().GetMaxObjectBytes()
	if quota == 0 {
		return nil
	}
	size := o.rec.bytes
	for _, k := range w.Deletes {
		if old, found := o.get(k); found {
			size -= uint64(len(k) + len(old.value))
		}
	}
	for _, p := range w.Puts {
		if old, found := o.get(p.Key); found {
			size = size - uint64(len(old.value)) + uint64(len(p.Value))
		} else {
			size += uint64(len(p.Key) + len(p.Value))
		}
	}
	return quotaError(a.ns, o, size, quota)
}

// quotaError refuses an object that would hold size bytes, more than quota
// allows, unless it shrinks (an object left over a lowered quota may still
// shrink).
func quotaError(ns *raftcmdv1.Namespace, o *objState, size, quota uint64) error {
	if quota > 0 && size > quota && size > o.startBytes {
		return fmt.Errorf("%w: object %q would hold %d bytes, namespace %q allows %d per object (max_object_bytes)",
			ErrQuotaExceeded, o.name, size, ns.Name, quota)
	}
	return nil
}

// validateBatch checks keys, encodings and that no key appears twice.
func validateBatch(w *raftcmdv1.BatchWrite) error {
	seen := make(map[string]bool, len(w.Puts)+len(w.Deletes)) // membership only; never iterated
	for i, k := range w.Deletes {
		if err := ValidateKey(fmt.Sprintf("deletes[%d]", i), k); err != nil {
			return err
		}
		if seen[k] {
			return fmt.Errorf("%w: deletes[%d]: key %q appears twice in the batch", ErrInvalidArgument, i, k)
		}
		seen[k] = true
	}
	for i, p := range w.Puts {
		if err := ValidateKey(fmt.Sprintf("puts[%d].key", i), p.GetKey()); err != nil {
			return err
		}
		if seen[p.Key] {
			return fmt.Errorf("%w: puts[%d]: key %q appears twice in the batch", ErrInvalidArgument, i, p.Key)
		}
		seen[p.Key] = true
		if err := validateEncoding(fmt.Sprintf("puts[%d]", i), p.Encoding); err != nil {
			return err
		}
	}
	return nil
}

func validateEncoding(field string, e raftcmdv1.ValueEncoding) error {
	if e != raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY && e != raftcmdv1.ValueEncoding_VALUE_ENCODING_JSON {
		return fmt.Errorf("%w: %s: unknown value encoding %d", ErrInvalidArgument, field, e)
	}
	return nil
}

func (a *applier) applyDeleteObject(d *raftcmdv1.DeleteObject) (*raftcmdv1.Result, error) {
	ns, err := a.validateObject(d.GetNamespace(), d.GetObject())
	if err != nil {
		return nil, err
	}
	shard := ShardOf(d.Namespace, d.Object)
	alarms := a.deleteObjectAlarms(ns, d.Object) // alarms live apart from keys: an object may have only alarms
	var n uint64
	hasKeys := a.tx.Bucket(shardBuckets[shard]).Get(objectKey(d.Namespace, d.Object)) != nil
	if hasKeys {
		n = a.deleteObjectData(ns, d.Object, shard)
	}
	if hasKeys || alarms > 0 {
		a.putNamespace(ns)
	}
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_DeleteObject{
		DeleteObject: &raftcmdv1.DeleteObjectResult{DeletedKeys: n, Existed: hasKeys || alarms > 0, DeletedAlarms: alarms},
	}}, nil
}

// deleteObjectData deletes every key of object name, its record and its
// index entry, updates the shard's stats and decrements ns.ObjectCount
// (the caller writes or deletes ns). It returns the number of keys
// deleted. Keys are deleted by seeking afresh each time: bounded memory.
func (a *applier) deleteObjectData(ns *raftcmdv1.Namespace, name string, shard uint8) uint64 {
	sb := a.tx.Bucket(shardBuckets[shard])
	okey := objectKey(ns.Name, name)
	v := sb.Get(okey)
	if v == nil {
		panic(fmt.Sprintf("fsm: index names object %q/%q but shard %d has no record", ns.Name, name, shard))
	}
	obj, err := decodeObjectRecord(v)
	if err != nil {
		panic(err)
	}
	prefix := keyPrefix(ns.Name, name)
	var n uint64
	c := sb.Cursor()
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		a.dirty = true
		must(c.Delete())
		n++
	}
	a.delete(sb, okey)
	a.delete(a.tx.Bucket(bucketObjects), indexKey(ns.Name, name))
	a.emit(Event{Type: EventDeleteObject, Object: name})
	ns.ObjectCount--
	stat := readShardStat(sb)
	stat.objects--
	stat.bytes -= obj.bytes
	stat.keys -= obj.keys
	a.put(sb, shardStatKey, stat.encode())
	return n
}
