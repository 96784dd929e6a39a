package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// CommandVersion is the Command envelope version this build writes and
// reads.
const CommandVersion = 1

// Entry is one log entry handed to ApplyBatch.
type Entry struct {
	// Index is the entry's Raft log index; it becomes the revision of what
	// the command writes.
	Index uint64
	// Data is an encoded raftcmdv1.Command, or nil for an entry without a
	// command (a Raft configuration change) that only advances the applied
	// index.
	Data []byte
}

// Result is the FSM's answer to one entry: a result, or a domain error
// that left the state unchanged. Both are nil for entries without a
// command and for entries skipped because they were already applied.
type Result struct {
	Result *raftcmdv1.Result
	Err    error
}

// ApplyBatch applies entries and returns one Result per entry. Entries at
// or below the applied index are skipped: after a restart Raft hands them
// over again, and they must not apply twice.
//
// Batches go into one open database transaction, which also records the
// applied index, and are committed together: when a query or a snapshot
// needs the state (they commit first, so they see every applied batch),
// or before a batch once commitEntries entries or commitBytes of commands
// are waiting or the transaction has changed commitNodes pages. A crash loses only what was not committed, and Raft hands
// it over again from the applied index the file holds.
//
// A transaction refused over its quota after its ops wrote takes its
// writes back in place (its undo log). Any other command that fails after
// it has written cannot be undone piecemeal: the transaction is rolled
// back, the batches before it in the transaction are applied again and
// committed, and the batch is applied again with that command answered by
// its error. Either way a failed command never leaves a trace.
//
// ApplyBatch panics when an entry cannot be decoded or names a command this
// build does not know: a replica that stops is better than one that
// diverges (the batches before it are committed first). When the database
// cannot be written (a full disk, an I/O error) it returns an error
// wrapping ErrStorage and has applied nothing of entries, and the batches
// applied before stay applied: the caller applies the same entries again
// once the cause is gone.
func (f *FSM) ApplyBatch(entries []Entry) ([]Result, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		panic("fsm: ApplyBatch after Close")
	}
	results, changes, last, err := f.applyLocked(entries)
	if err != nil {
		return nil, err
	}
	// Told once wmu is released: the observer may query, and a query
	// commits first.
	if f.opts.Observer != nil {
		f.opts.Observer.Committed(last, changes)
	}
	return results, nil
}

// applyLocked applies entries into the write transaction under wmu.
func (f *FSM) applyLocked(entries []Entry) ([]Result, []ChangeSet, uint64, error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			// An entry this build cannot apply stops the node (decodeCommand):
			// drop this batch's writes and keep the batches before it, which
			// were answered.
			if f.wtx != nil {
				_ = f.wtx.Rollback()
				f.wtx = nil
			}
			_ = f.commitLocked()
			panic(p)
		}
	}()
	// Commit what earlier batches left before this one goes in, so that a
	// failed commit never concerns the batch the caller will retry. After
	// a failed commit every batch tries again first.
	if f.commitErr != nil || f.pendingEntries >= commitEntries || f.pendingBytes >= commitBytes ||
		f.changedNodes() >= commitNodes {
		if err := f.commitLocked(); err != nil {
			return nil, nil, 0, fmt.Errorf("%w: commit to %s: %w", ErrStorage, f.path, err)
		}
	}
	failed := make([]error, len(entries)) // commands that failed after writing
	for {
		if err := f.beginLocked(); err != nil {
			return nil, nil, 0, fmt.Errorf("%w: commit to %s: %w", ErrStorage, f.path, err)
		}
		results, changes, last, applies, err := applyIn(f.wtx, &f.expiry, !f.redoRefused, entries, failed)
		if err != nil {
			// A command failed after writing (errRedo), or the database
			// refused a write: roll back every batch not yet committed, and
			// apply them again (beginLocked) before this one.
			_ = f.wtx.Rollback()
			f.wtx = nil
			if errors.Is(err, errRedo) {
				// Commit them once applied again, so that the next
				// refused command does not apply them a third time: each
				// costs a commit, and no entry is applied more than twice
				// (once more per refused command of its own batch), where
				// a client writing to a full object again and again made
				// every replica apply up to commitEntries entries again
				// for each refusal.
				if err := f.commitLocked(); err != nil {
					return nil, nil, 0, fmt.Errorf("%w: commit to %s: %w", ErrStorage, f.path, err)
				}
				continue
			}
			return nil, nil, 0, fmt.Errorf("%w: commit to %s: %w", ErrStorage, f.path, err)
		}
		if last > f.applied.Load() {
			// A copy: the caller may reuse its slice, and the batch may
			// have to be applied again until it is committed.
			f.pending = append(f.pending, pendingBatch{entries: slices.Clone(entries), failed: failed})
			f.pendingEntries += len(entries)
			for _, e := range entries {
				f.pendingBytes += len(e.Data)
			}
			f.dirty.Store(true)
		}
		f.applied.Store(last)
		f.applies.Add(applies)
		return results, changes, last, nil
	}
}

// errRedo rolls a batch's transaction back so it can be applied again.
var errRedo = errors.New("fsm: redo batch")

// Batches stay in one open write transaction until a query needs them,
// a snapshot is taken, or this much has been applied since the last
// commit (the pages bound keeps a commit's pause short when writes land
// on pages of their own, as they do over millions of keys).
const (
	commitEntries = 1024
	commitBytes   = 16 << 20
	commitNodes   = 1024 // B+tree pages the transaction has changed
)

// pendingBatch is a batch applied in the open write transaction and not
// yet committed, kept to be applied again if that transaction is lost.
type pendingBatch struct {
	entries []Entry
	failed  []error
}

// beginLocked opens the write transaction if none is open, applying again
// the batches a rolled-back one held. The caller holds wmu.
func (f *FSM) beginLocked() error {
	if f.wtx != nil {
		return nil
	}
	tx, err := f.db.Begin(true)
	if err != nil {
		return err
	}
	defer func() {
		if f.wtx != tx { // an error, or a panic: never leave the writer's lock held
			_ = tx.Rollback()
		}
	}()
	for _, b := range f.pending {
		if _, _, _, _, err := applyIn(tx, &f.expiry, !f.redoRefused, b.entries, b.failed); err != nil {
			return err
		}
		f.reapplied += uint64(len(b.entries))
	}
	f.wtx = tx
	return nil
}

// commitLocked commits the batches applied since the last commit. On
// error they are kept, to be applied again in the next transaction. The
// caller holds wmu.
func (f *FSM) commitLocked() error {
	if len(f.pending) == 0 {
		return nil
	}
	if err := f.beginLocked(); err != nil {
		return err
	}
	var err error
	if f.failCommit != nil {
		err = f.failCommit()
	}
	if err != nil {
		_ = f.wtx.Rollback()
	} else {
		err = f.wtx.Commit()
	}
	f.wtx = nil
	f.commitErr = err
	if err != nil {
		return err
	}
	f.pending, f.pendingEntries, f.pendingBytes = nil, 0, 0
	f.dirty.Store(false)
	return nil
}

// changedNodes returns how many B+tree pages the open write transaction
// has materialized to change them (what its commit will write), 0 when
// none is open. The caller holds wmu.
func (f *FSM) changedNodes() int64 {
	if f.wtx == nil {
		return 0
	}
	st := f.wtx.Stats()
	return st.GetNodeCount()
}

// flush commits the applied batches not yet committed, so that a read
// transaction sees them. The caller holds mu.
func (f *FSM) flush() error {
	if !f.dirty.Load() {
		return nil
	}
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if err := f.commitLocked(); err != nil {
		return fmt.Errorf("%w: commit to %s: %w", ErrStorage, f.path, err)
	}
	return nil
}

func applyIn(tx *bolt.Tx, hint *expiryHint, undoable bool, entries []Entry, failed []error) ([]Result, []ChangeSet, uint64, uint64, error) {
	results := make([]Result, len(entries))
	var changes []ChangeSet
	var last, applies uint64
	err := func() error {
		meta := tx.Bucket(bucketMeta)
		applied := readU64(meta.Get(metaApplied))
		now := int64(readU64(meta.Get(metaNow)))
		last = applied
		for i, e := range entries {
			if e.Index <= last {
				continue // applied before a restart (or out of order)
			}
			last = e.Index
			if e.Data == nil {
				continue
			}
			cmd := decodeCommand(e)
			if cmd.TimeUnixMs > now {
				now = cmd.TimeUnixMs
			}
			// Expiry runs per entry, so the state at each index depends on
			// the log alone, never on how entries were batched.
			expireRequests(tx, hint, now, expiryBatch)
			applies++
			if failed[i] != nil {
				results[i] = Result{Err: failed[i]}
				continue
			}
			a := &applier{tx: tx, index: e.Index, now: now, stamp: cmd.TimeUnixMs, undoable: undoable}
			res, err := a.applyOnce(cmd)
			if err != nil && a.dirty {
				failed[i] = err // applied again (after a failed commit), answered from here
				if a.undo == nil {
					return errRedo
				}
				a.takeBack()
			}
			if res != nil && !res.Replayed {
				res.Revision = e.Index
			}
			results[i] = Result{Result: res, Err: err}
			if err == nil && len(a.events) > 0 {
				changes = append(changes, ChangeSet{Revision: e.Index, Namespace: commandNamespace(cmd), Events: a.events})
			}
		}
		if last == applied {
			return nil
		}
		if err := meta.Put(metaApplied, u64(last)); err != nil {
			return err
		}
		return meta.Put(metaNow, u64(uint64(now)))
	}()
	return results, changes, last, applies, err
}

// decodeCommand decodes e's command or panics: a command this build
// cannot apply exactly as its proposer meant stops this node, with a
// message that says so, rather than let its state differ from the others'.
func decodeCommand(e Entry) *raftcmdv1.Command {
	cmd, err := DecodeCommand(e.Data)
	if err != nil {
		panic(fmt.Sprintf("fsm: entry %d: %s", e.Index, strings.TrimPrefix(err.Error(), "fsm: ")))
	}
	return cmd
}

// DecodeCommand decodes a log entry's command, and refuses one this build
// cannot apply exactly as its proposer meant: undecodable, of another
// envelope version, or with fields it does not know (CheckCommand).
func DecodeCommand(data []byte) (*raftcmdv1.Command, error) {
	cmd := &raftcmdv1.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("fsm: undecodable command: %w", err)
	}
	if cmd.Version != CommandVersion {
		return nil, fmt.Errorf("fsm: command envelope version %d, this build applies version %d; "+
			"if the entry comes from a newer cairn release, upgrade this node to that release", cmd.Version, CommandVersion)
	}
	if err := CheckCommand(cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// applier applies one command inside the batch's transaction. Handlers
// check what they can before writing; a handler that fails after writing
// (dirty) has its writes taken back from its undo log, or, without one,
// makes ApplyBatch roll the batch back.
type applier struct {
	tx    *bolt.Tx
	index uint64 // the entry's index: the revision of its writes
	now   int64  // log time, unix ms
	stamp int64  // the command's own time stamp (the proposing leader's clock)
	dirty bool   // something was written

	ns      *raftcmdv1.Namespace // the namespace of the objects below
	objects []*objState          // objects the command touched, in first-touch order
	events  []Event              // the changes made, for watchers

	alarmsChanged bool // an alarm was written: the namespace's counts changed

	undoable bool         // the command may keep an undo log (keepUndo)
	undo     []undoRecord // what the command overwrote, when it keeps one; nil when not
}

// applyOnce answers a command that carries a request id already applied
// within its retention window from the stored result, refuses the id
// reused for another request, and otherwise applies the command and, on
// success, remembers its result.
func (a *applier) applyOnce(cmd *raftcmdv1.Command) (*raftcmdv1.Result, error) {
	if cmd.RequestId == "" {
		return a.apply(cmd)
	}
	if len(cmd.RequestId) > MaxRequestIDBytes {
		return nil, fmt.Errorf("%w: request_id is %d bytes, limit is %d", ErrInvalidArgument, len(cmd.RequestId), MaxRequestIDBytes)
	}
	ns := commandNamespace(cmd)
	digest := requestDigest(cmd)
	key := requestKey(ns, cmd.RequestId)
	res, expired, found, err := lookupRequest(a.tx, key, ns, cmd.RequestId, digest, a.now)
	if found {
		return res, err
	}
	res, err = a.apply(cmd)
	if err != nil {
		return nil, err
	}
	res.Revision = a.index
	a.rememberRequest(key, expired, digest, retentionOf(cmd), res)
	return res, nil
}

func (a *applier) put(b *bolt.Bucket, k, v []byte) {
	a.remember(b, k)
	a.dirty = true
	must(b.Put(k, v))
}

func (a *applier) delete(b *bolt.Bucket, k []byte) {
	a.remember(b, k)
	a.dirty = true
	must(b.Delete(k))
}

// undoRecord is what a key held before a command wrote it.
type undoRecord struct {
	b       *bolt.Bucket
	key     []byte
	old     []byte // its value, when it existed
	existed bool
}

// remember notes what key k of b holds before the command writes it, when
// the command keeps an undo log.
func (a *applier) remember(b *bolt.Bucket, k []byte) {
	if a.undo == nil {
		return
	}
	r := undoRecord{b: b, key: bytes.Clone(k)}
	if found, v := b.Cursor().Seek(k); found != nil && bytes.Equal(found, k) {
		r.old, r.existed = bytes.Clone(v), true
	}
	a.undo = append(a.undo, r)
}

// keepUndo makes the command keep an undo log: it may be refused after it
// wrote (a transaction over its objects' quota), and taking its writes back
// in place (takeBack) spares rolling back the write transaction, which
// throws away, and applies again, every batch it holds.
func (a *applier) keepUndo() {
	if a.undoable && a.undo == nil {
		a.undo = []undoRecord{}
	}
}

// takeBack restores, newest first, every key the command wrote.
func (a *applier) takeBack() {
	for i := len(a.undo) - 1; i >= 0; i-- {
		r := a.undo[i]
		if r.existed {
			must(r.b.Put(r.key, r.old))
		} else {
			must(r.b.Delete(r.key))
		}
	}
	a.undo = a.undo[:0]
}

func (a *applier) putNamespace(ns *raftcmdv1.Namespace) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ns)
	must(err)
	a.put(a.tx.Bucket(bucketNamespaces), []byte(ns.Name), b)
}

// apply is the one dispatch of command types to their handlers.
func (a *applier) apply(cmd *raftcmdv1.Command) (*raftcmdv1.Result, error) {
	switch op := cmd.Op.(type) {
	case *raftcmdv1.Command_PutNamespace:
		return a.applyPutNamespace(op.PutNamespace)
	case *raftcmdv1.Command_DeleteNamespace:
		return a.applyDeleteNamespace(op.DeleteNamespace)
	case *raftcmdv1.Command_BatchWrite:
		return a.applyBatchWrite(op.BatchWrite)
	case *raftcmdv1.Command_DeleteObject:
		return a.applyDeleteObject(op.DeleteObject)
	case *raftcmdv1.Command_SetMember:
		return a.applySetMember(op.SetMember)
	case *raftcmdv1.Command_RemoveMember:
		return a.applyRemoveMember(op.RemoveMember)
	case *raftcmdv1.Command_Txn:
		return a.applyTxn(op.Txn)
	case *raftcmdv1.Command_SetAlarm:
		return a.applySetAlarm(op.SetAlarm)
	case *raftcmdv1.Command_DeleteAlarm:
		return a.applyDeleteAlarm(op.DeleteAlarm)
	case *raftcmdv1.Command_ClaimAlarms:
		return a.applyClaimAlarms(op.ClaimAlarms)
	case *raftcmdv1.Command_BeginDelivery:
		return a.applyBeginDelivery(op.BeginDelivery)
	case *raftcmdv1.Command_AckAlarms:
		return a.applyAckAlarms(op.AckAlarms)
	default:
		panic(fmt.Sprintf("fsm: entry %d: no handler for command %T", a.index, op))
	}
}

// must panics on a storage error inside a handler's write phase, where a
// partial write would leave replicas diverged.
func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("fsm: write failed: %v", err))
	}
}

func emptyResult() *raftcmdv1.Result {
	return &raftcmdv1.Result{Result: &raftcmdv1.Result_Empty{Empty: &raftcmdv1.EmptyResult{}}}
}

// dropPending rolls back the open write transaction and forgets the
// batches it held: Restore replaces the state they were applied to. The
// caller holds mu for writing.
func (f *FSM) dropPending() {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.wtx != nil {
		_ = f.wtx.Rollback()
		f.wtx = nil
	}
	f.pending, f.pendingEntries, f.pendingBytes = nil, 0, 0
	f.dirty.Store(false)
}
