package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
)

// committedIndex reads the applied index the database file holds, without
// the commit that queries make first.
func committedIndex(t *testing.T, f *FSM) uint64 {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	var idx uint64
	if err := f.db.View(func(tx *bolt.Tx) error {
		idx = readU64(tx.Bucket(bucketMeta).Get(metaApplied))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return idx
}

// puts returns n single-key puts into ns/object, keys named from first.
func puts(ns, object string, first, n int) []*raftcmdv1.Command {
	cmds := make([]*raftcmdv1.Command, n)
	for i := range cmds {
		cmds[i] = cmdPut(ns, object, fmt.Sprintf("k%06d", first+i), "v")
	}
	return cmds
}

// Batches stay in one write transaction until a query needs them or
// commitEntries have been applied: the file's applied index moves only
// then, and queries always see every applied batch.
func TestBatchesShareOneCommit(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("ns", 0))
	mustApply(t, f, cmdPut("ns", "o", "a", "1"))
	mustApply(t, f, cmdPut("ns", "o", "b", "2"))
	if got := committedIndex(t, f); got != 0 {
		t.Fatalf("the file holds applied index %d after three batches, want 0 (nothing committed yet)", got)
	}
	if kv := mustGet(t, f, "ns", "o", "b"); string(kv.Value) != "2" {
		t.Fatalf("a query sees %q, want the last batch's write", kv.Value)
	}
	if got := committedIndex(t, f); got != 3 {
		t.Fatalf("the file holds applied index %d after a query, want 3", got)
	}

	// Without queries, the batch after commitEntries applied entries
	// commits them first.
	first := f.AppliedIndex() + 1
	for i := 0; i < commitEntries/256; i++ {
		mustApply(t, f, puts("ns", "o", i*256, 256)...)
	}
	if got := committedIndex(t, f); got != 3 {
		t.Fatalf("the file holds applied index %d after %d entries, want 3", got, commitEntries)
	}
	mustApply(t, f, cmdPut("ns", "o", "c", "3"))
	if got, want := committedIndex(t, f), first+commitEntries-1; got != want {
		t.Fatalf("the file holds applied index %d once %d entries were pending, want %d", got, commitEntries, want)
	}
}

// reference applies the same batches to a fresh FSM, committing each one
// alone, and returns its hash.
func reference(t *testing.T, batches ...[]Entry) []byte {
	t.Helper()
	r := mustNew(t)
	for _, b := range batches {
		mustApplyBatch(t, r, b)
		if err := r.flush(); err != nil {
			t.Fatal(err)
		}
	}
	return mustHash(t, r)
}

// A command that fails after writing rolls the write transaction back:
// the batches before it in that transaction, answered already, are
// applied again.
func TestRedoKeepsUncommittedBatches(t *testing.T) {
	f := mustNew(t)
	f.redoRefused = true
	b1 := entriesAt(t, 1, cmdPutNamespace("q", 20), cmdPutNamespace("free", 0))
	b2 := entriesAt(t, 3, cmdPut("free", "o", "kept", "yes"))
	b3 := entriesAt(t, 4, cmdTxn("q", nil, ops(opPut("o", "big", "123456789012345678901")), nil), cmdPut("free", "o", "after", "yes"))
	mustApplyBatch(t, f, b1)
	mustApplyBatch(t, f, b2)
	res := mustApplyBatch(t, f, b3)
	if !errors.Is(res[0].Err, ErrQuotaExceeded) || res[1].Err != nil {
		t.Fatalf("results %v, want a quota error and a success", res)
	}
	if kv := mustGet(t, f, "free", "o", "kept"); string(kv.Value) != "yes" {
		t.Fatalf("the batch before the redo is gone: %q", kv.Value)
	}
	mustGet(t, f, "free", "o", "after")
	if !bytes.Equal(mustHash(t, f), reference(t, b1, b2, b3)) {
		t.Fatal("the state differs from the same batches committed one by one")
	}
}

// A write refused over its object's quota applies nothing again: a batch
// write is refused before it writes, a transaction's writes are taken back
// in place. Where the write transaction is rolled back instead (a command
// refused after it wrote that keeps no undo log), the batches not yet
// committed are applied again and committed then: a client that writes to
// a full object again and again costs each replica a commit per refusal,
// not the whole open transaction applied again each time.
func TestRefusedWritesApplyLittleAgain(t *testing.T) {
	const before, refusals = 300, 30
	txn := cmdTxn("q", nil, ops(opPut("o", "big", strings.Repeat("v", 30))), nil)
	for _, tt := range []struct {
		name string
		over *raftcmdv1.Command
		max  uint64 // entries applied again, at most
	}{
		// The first refusal applies the 302 entries before it again; each
		// later one only the batch of the refusal before it (3 entries).
		{"transaction rolled back", txn, before + 2 + 3*(refusals-1)},
		// Taken back in place (the default), or refused before it writes.
		{"transaction", txn, 0},
		{"batch write", cmdPut("q", "o", "big", strings.Repeat("v", 30)), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustNew(t)
			f.redoRefused = strings.HasSuffix(tt.name, "rolled back")
			batches := [][]Entry{entriesAt(t, 1, cmdPutNamespace("q", 20), cmdPutNamespace("free", 0))}
			idx := uint64(3)
			for i := range before {
				batches = append(batches, entriesAt(t, idx, cmdPut("free", "o", fmt.Sprint(i), "v")))
				idx++
			}
			for i := range refusals {
				batches = append(batches, entriesAt(t, idx, cmdPut("free", "p", fmt.Sprint(i), "v"), tt.over, cmdPut("free", "r", fmt.Sprint(i), "v")))
				idx += 3
			}
			for i, b := range batches {
				res := mustApplyBatch(t, f, b)
				if i > before && (res[0].Err != nil || !errors.Is(res[1].Err, ErrQuotaExceeded) || res[2].Err != nil) {
					t.Fatalf("batch %d: results %v, want a success, a quota error and a success", i, res)
				}
			}
			if f.reapplied > tt.max {
				t.Fatalf("%d entries applied again for %d refusals, want at most %d", f.reapplied, refusals, tt.max)
			}
			if !bytes.Equal(mustHash(t, f), reference(t, batches...)) {
				t.Fatal("the state differs from the same batches committed one by one")
			}
		})
	}
}

// A commit the disk refuses loses nothing: queries answer from the applied
// state without trying again, the next batch tries again and is refused
// whole (Raft's side applies it again), and the next commit holds every
// batch.
func TestFailedCommitKeepsAppliedBatches(t *testing.T) {
	f := mustNew(t)
	b1 := entriesAt(t, 1, cmdPutNamespace("ns", 0))
	b2 := entriesAt(t, 2, cmdPut("ns", "o", "a", "1"))
	mustApplyBatch(t, f, b1)
	mustApplyBatch(t, f, b2)
	full := errors.New("no space left on device")
	tries := 0
	f.failCommit = func() error { tries++; return full }

	for i := 0; i < 3; i++ {
		if kv := mustGet(t, f, "ns", "o", "a"); string(kv.Value) != "1" {
			t.Fatalf("a query while commits fail sees %q, want the applied write", kv.Value)
		}
	}
	if tries != 1 {
		t.Fatalf("three queries tried %d commits, want 1 (the first; the others answer from the write transaction)", tries)
	}
	if s, err := f.Snapshot(); !errors.Is(err, ErrStorage) {
		if s != nil {
			s.Release()
		}
		t.Fatalf("a snapshot while commits fail: %v, want ErrStorage (never one older than the applied index)", err)
	}
	applied := f.AppliedIndex()
	next := entriesAt(t, applied+1, cmdPut("ns", "o", "b", "2"))
	if _, err := f.ApplyBatch(next); !errors.Is(err, ErrStorage) || !errors.Is(err, full) {
		t.Fatalf("ApplyBatch after a failed commit: %v, want ErrStorage wrapping the cause", err)
	}
	if f.AppliedIndex() != applied {
		t.Fatalf("applied index %d after a refused batch, want %d", f.AppliedIndex(), applied)
	}
	if _, err := f.Get("ns", "o", "b"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("the refused batch's write: %v, want ErrKeyNotFound", err)
	}

	f.failCommit = nil
	res := mustApplyBatch(t, f, next)
	if res[0].Err != nil || res[0].Result.GetRevision() != applied+1 {
		t.Fatalf("the batch applied again: %+v, want revision %d", res[0], applied+1)
	}
	if got := committedIndex(t, f); got != applied {
		t.Fatalf("the file holds applied index %d, want %d (the batches before the refused one)", got, applied)
	}
	if err := f.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustHash(t, f), reference(t, b1, b2, next)) {
		t.Fatal("the state differs from the same batches committed one by one")
	}
}

// The observer is told outside the lock of the write transaction: it may
// query, and a query commits first.
func TestObserverMayQuery(t *testing.T) {
	obs := &queryingObserver{}
	f, err := Open(Options{Dir: t.TempDir(), NoSync: true, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	obs.f = f
	done := make(chan error, 1)
	go func() {
		_, err := f.ApplyBatch(entriesAt(t, 1, cmdPutNamespace("ns", 0)))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ApplyBatch did not return within 10 s: an observer that queries deadlocks it")
	}
	if obs.seen != 1 {
		t.Fatalf("the observer's query saw %d namespaces, want the one just applied", obs.seen)
	}
}

type queryingObserver struct {
	f    *FSM
	seen int
}

func (o *queryingObserver) Committed(uint64, []ChangeSet) {
	nss, _ := o.f.Namespaces()
	o.seen = len(nss)
}

func (o *queryingObserver) Restored(uint64) {}

// ApplyBatch keeps its own copy of a batch it may have to apply again:
// the caller may reuse its slice.
func TestCallerMayReuseEntries(t *testing.T) {
	f := mustNew(t)
	mustApplyBatch(t, f, entriesAt(t, 1, cmdPutNamespace("q", 20), cmdPutNamespace("free", 0)))
	buf := entriesAt(t, 3, cmdPut("free", "o", "first", "1"))
	mustApplyBatch(t, f, buf)
	copy(buf, entriesAt(t, 4, cmdPut("free", "o", "second", "2")))
	mustApplyBatch(t, f, buf)
	// A command over its quota rolls the transaction back: the waiting
	// batches are applied again.
	f.redoRefused = true
	res := mustApplyBatch(t, f, entriesAt(t, 5, cmdTxn("q", nil, ops(opPut("o", "big", "123456789012345678901")), nil)))
	if !errors.Is(res[0].Err, ErrQuotaExceeded) {
		t.Fatalf("result %v, want a quota error", res[0])
	}
	mustGet(t, f, "free", "o", "first")
	mustGet(t, f, "free", "o", "second")
}

// A process that dies loses the batches not yet committed, and only them:
// Raft hands them over again from the stored applied index.
func TestCrashLosesOnlyUncommittedBatches(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	b1 := entriesAt(t, 1, cmdPutNamespace("ns", 0), cmdPut("ns", "o", "a", "1"))
	b2 := entriesAt(t, 3, cmdPut("ns", "o", "b", "2"))
	b3 := entriesAt(t, 5, cmdPut("ns", "o", "c", "3")) // index 4 was a configuration entry
	mustApplyBatch(t, f, b1)
	mustHash(t, f) // a query commits b1
	mustApplyBatch(t, f, b2)
	mustApplyBatch(t, f, []Entry{{Index: 4}})
	mustApplyBatch(t, f, b3)
	crash(t, f)

	f = mustOpen(t, dir)
	if got := f.AppliedIndex(); got != 2 {
		t.Fatalf("applied index %d after the crash, want 2 (the last commit)", got)
	}
	replay := append(append(append([]Entry{}, b1...), b2...), Entry{Index: 4})
	replay = append(replay, b3...)
	res := mustApplyBatch(t, f, replay)
	for i, r := range res {
		if applied := replay[i].Index > 2 && replay[i].Data != nil; applied != (r.Result != nil) {
			t.Fatalf("entry %d after the crash: result %v", replay[i].Index, r.Result)
		}
	}
	if !bytes.Equal(mustHash(t, f), reference(t, b1, b2, []Entry{{Index: 4}}, b3)) {
		t.Fatal("the state after the crash and the replay differs")
	}
}

// A snapshot covers every applied batch, committed or not.
func TestSnapshotCoversUncommittedBatches(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("ns", 0))
	mustHash(t, f)
	mustApply(t, f, cmdPut("ns", "o", "a", "1"))
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if s.Index() != f.AppliedIndex() {
		t.Fatalf("snapshot at index %d, applied %d", s.Index(), f.AppliedIndex())
	}
}

// An entry this build cannot apply panics (stopping the node); the
// batches before it, answered already, are committed first.
func TestPanicCommitsEarlierBatches(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("ns", 0))
	mustApply(t, f, cmdPut("ns", "o", "a", "1"))
	bad := entriesAt(t, 3, cmdPut("ns", "o", "b", "2"))
	bad = append(bad, Entry{Index: 4, Data: []byte{0xff}})
	mustPanic(t, func() { _, _ = f.ApplyBatch(bad) })
	if got := committedIndex(t, f); got != 2 {
		t.Fatalf("the file holds applied index %d after the panic, want 2", got)
	}
	if _, err := f.Get("ns", "o", "b"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("the panicking batch's first write: %v, want ErrKeyNotFound", err)
	}
}

// Queries running while batches are applied each see at least the state
// of the applied index when they began, never the older one the file
// holds.
func TestQueriesSeeAppliedBatchesConcurrently(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("ns", 0), cmdPut("ns", "o", "k", "0"))
	done := make(chan struct{})
	errs := make(chan error, 4)
	for r := 0; r < 4; r++ {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				before := f.AppliedIndex()
				kv, err := f.Get("ns", "o", "k")
				if err != nil {
					errs <- err
					return
				}
				if kv.ModRevision < before {
					errs <- fmt.Errorf("a query begun at applied index %d read the key at revision %d", before, kv.ModRevision)
					return
				}
			}
		}()
	}
	for i := 0; i < 300; i++ {
		b := make([]*raftcmdv1.Command, 1+i%4)
		for j := range b {
			b[j] = cmdPut("ns", "o", "k", fmt.Sprint(i))
		}
		mustApply(t, f, b...)
	}
	close(done)
	for r := 0; r < 4; r++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// Writes spread over many pages commit once the transaction has changed
// commitNodes pages, before commitEntries entries wait: a commit's pause
// is bounded by the pages it writes, not only by the entries it holds.
func TestCommitBoundsChangedPages(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("ns", 0))
	value := string(bytes.Repeat([]byte("v"), 256))
	const keys = 40000 // about 13 keys of 256 bytes per 4 KiB page: ~3,000 leaf pages
	for first := 0; first < keys; first += 256 {
		cmds := make([]*raftcmdv1.Command, 256)
		for i := range cmds {
			cmds[i] = cmdPut("ns", "o", fmt.Sprintf("k%06d", first+i), value)
		}
		mustApply(t, f, cmds...)
	}
	if err := f.flush(); err != nil {
		t.Fatal(err)
	}
	before := committedIndex(t, f)
	// One key in every 40: each write changes a leaf page of its own.
	for n := 0; n < commitEntries-16; n += 16 {
		cmds := make([]*raftcmdv1.Command, 16)
		for i := range cmds {
			cmds[i] = cmdPut("ns", "o", fmt.Sprintf("k%06d", (n+i)*40%keys), "w")
		}
		mustApply(t, f, cmds...)
	}
	if committedIndex(t, f) == before {
		t.Fatalf("%d writes to as many pages and no commit: the transaction holds %d changed pages, the bound is %d",
			commitEntries-16, f.changedNodes(), commitNodes)
	}
}

// Polling the namespaces (the leader's alarm scheduler does it every poll
// interval) reads the applied batches from the open write transaction
// and commits nothing: the batches go on sharing one commit.
func TestPollNamespacesDoesNotCommit(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("a", 0))
	mustApply(t, f, cmdPut("a", "o", "k", "1"))
	mustApply(t, f, cmdPutNamespace("b", 0))
	nss, err := f.PollNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(nss) != 2 || nss[0].Name != "a" || nss[1].Name != "b" || nss[0].ObjectCount != 1 {
		t.Fatalf("PollNamespaces() = %v, want a (1 object) and b", nss)
	}
	if got := committedIndex(t, f); got != 0 {
		t.Fatalf("the file holds applied index %d after listing the namespaces, want 0 (nothing committed)", got)
	}
	if kv := mustGet(t, f, "a", "o", "k"); string(kv.Value) != "1" {
		t.Fatalf("get = %q, want 1", kv.Value)
	}
	if got := committedIndex(t, f); got != 3 {
		t.Fatalf("the file holds applied index %d after a get, want 3", got)
	}
	// Committed and clean: from a read transaction.
	if nss, err := f.PollNamespaces(); err != nil || len(nss) != 2 || nss[0].ObjectCount != 1 {
		t.Fatalf("PollNamespaces() = %v, %v after the commit", nss, err)
	}
}

// The scheduler's poll of due alarms commits nothing while none is due
// (an alarm set ahead): the batches go on sharing one commit. Once one is
// due, the poll reads it as every query does.
func TestDueAlarmsPollDoesNotCommitWhenNoneDue(t *testing.T) {
	f := alarmFSM(t)
	mustApply(t, f, at(t0, cmdSetAlarm("p", "o", "x", t0+1000, "", 0)))
	_, _ = f.Get("p", "o", "missing-key") // a query: commits what waits
	committed := committedIndex(t, f)
	mustApply(t, f, at(t0+1, cmdPut("p", "o", "k", "v")))
	pending, expired, err := f.DueAlarms("p", t0+999, 10)
	if err != nil || len(pending) != 0 || len(expired) != 0 {
		t.Fatalf("DueAlarms before the alarm's time = %v, %v, %v; want none", pending, expired, err)
	}
	if got := committedIndex(t, f); got != committed {
		t.Fatalf("the file holds applied index %d after a poll that found nothing due, want %d (nothing committed)", got, committed)
	}
	pending, _, err = f.DueAlarms("p", t0+1000, 10)
	if err != nil || len(pending) != 1 || pending[0].Object != "o" {
		t.Fatalf("DueAlarms at the alarm's time = %v, %v; want o/x", pending, err)
	}
}

// A transaction refused over its quota after its ops wrote takes every
// write back: a key written twice, deleted and written again, a range
// deleted, an alarm replaced, one deleted and one created leave the keys
// and values the rollback (redoRefused) leaves, and the state as if the
// entry had held nothing.
func TestRefusedTxnTakenBack(t *testing.T) {
	setAlarm := func(object, name string, fireAt int64) *raftcmdv1.TxnOp {
		return &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_SetAlarm{SetAlarm: &raftcmdv1.AlarmSpec{Object: object, Name: name, FireAtMs: fireAt}}}
	}
	deleteAlarm := func(object, name string) *raftcmdv1.TxnOp {
		return &raftcmdv1.TxnOp{Op: &raftcmdv1.TxnOp_DeleteAlarm{DeleteAlarm: &raftcmdv1.AlarmRef{Object: object, Name: name}}}
	}
	ns := cmdAlarmNamespace("q", "", 100, u32(2), 1000)
	ns.GetPutNamespace().Settings.MaxObjectBytes = 60
	setup := entriesAt(t, 1, at(t0, ns),
		at(t0, cmdPut("q", "o", "a", "1")), at(t0, cmdPut("q", "o", "b", "22")),
		at(t0, cmdPut("q", "o", "c1", "333")), at(t0, cmdPut("q", "o", "c2", "")),
		at(t0, cmdSetAlarm("q", "o", "x", t0+1000, "", 0)), at(t0, cmdSetAlarm("q", "o", "y", t0+2000, "", 0)))
	refused := at(t0+1, cmdTxn("q", nil, ops(
		opPut("o", "a", "new"), opPut("o", "a", "newer"),
		opDel("o", "b"), opPut("o", "b", "back"),
		opDelRange("o", "c", "", ""),
		setAlarm("o", "x", t0+5000), deleteAlarm("o", "y"), setAlarm("o", "z", t0+3000),
		opPut("o2", "k", strings.Repeat("v", 100)), // o2 over the quota
	), nil))
	after := at(t0+1, cmdPut("q", "o", "d", "4"))

	var hashes [][]byte
	for _, mode := range []string{"taken back", "rolled back", "nothing"} {
		f := mustNew(t)
		f.redoRefused = mode == "rolled back"
		mustApplyBatch(t, f, setup) // waits in the write transaction
		batch := entriesAt(t, uint64(len(setup)+1), refused, after)
		if mode == "nothing" {
			batch[0].Data = nil
		}
		res := mustApplyBatch(t, f, batch)
		if mode != "nothing" && (!errors.Is(res[0].Err, ErrQuotaExceeded) || res[0].Result != nil || res[1].Err != nil) {
			t.Fatalf("%s: results %+v, want a quota error and a success", mode, res)
		}
		if reapplied := f.reapplied > 0; reapplied != (mode == "rolled back") {
			t.Fatalf("%s: %d entries applied again", mode, f.reapplied)
		}
		mustConsistent(t, f)
		mustAlarmInvariants(t, f)
		hashes = append(hashes, mustHash(t, f))
		if mode == "taken back" {
			if kv := mustGet(t, f, "q", "o", "a"); string(kv.Value) != "1" {
				t.Fatalf("a = %q after the refused transaction, want 1", kv.Value)
			}
			if got := keysOf(mustListAll(t, f, "q", "o")); !equalStrings(got, []string{"a", "b", "c1", "c2", "d"}) {
				t.Fatalf("keys %q after the refused transaction", got)
			}
			if a := mustAlarm(t, f, "q", "o", "x"); a.FireAtMs != t0+1000 {
				t.Fatalf("alarm x fires at t0 + %d, want t0 + 1000", a.FireAtMs-t0)
			}
			mustAlarm(t, f, "q", "o", "y")
			if _, err := f.Alarm("q", "o", "z"); !errors.Is(err, ErrAlarmNotFound) {
				t.Fatalf("alarm z after the refused transaction: %v", err)
			}
		}
	}
	if !bytes.Equal(hashes[0], hashes[1]) || !bytes.Equal(hashes[0], hashes[2]) {
		t.Fatal("taking the writes back, rolling back and an empty entry leave different states")
	}
}
