package fsm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// Tests of exactly-once request ids: replays, reuse, scope, the retention
// window and its expiry, determinism, and what a remembered request costs.

// reqT0 is a log time well after every time mustEncode stamps by default
// in these tests (baseTimeMs + index seconds), so that explicit times
// decide Now.
const reqT0 = baseTimeMs + 100_000_000

// withReq returns a copy of cmd with request id id, retention retentionMs
// (0: the default) and, unless timeMs is 0, log time timeMs.
func withReq(cmd *raftcmdv1.Command, id string, retentionMs, timeMs int64) *raftcmdv1.Command {
	c := proto.Clone(cmd).(*raftcmdv1.Command)
	c.RequestId, c.RequestRetentionMs, c.TimeUnixMs = id, retentionMs, timeMs
	return c
}

// atTime returns a copy of cmd stamped with log time ms.
func atTime(cmd *raftcmdv1.Command, ms int64) *raftcmdv1.Command {
	c := proto.Clone(cmd).(*raftcmdv1.Command)
	c.TimeUnixMs = ms
	return c
}

func mustRecords(t testing.TB, f *FSM) int {
	t.Helper()
	n, err := f.RequestRecords()
	if err != nil {
		t.Fatalf("RequestRecords: %v", err)
	}
	return n
}

// mustReplay applies cmd alone; it must be answered from the stored result
// want (Replayed, with want's revision) and change nothing but the applied
// index. It returns the replayed result.
func mustReplay(t testing.TB, f *FSM, cmd *raftcmdv1.Command, want *raftcmdv1.Result) *raftcmdv1.Result {
	t.Helper()
	hash := mustHash(t, f)
	records := mustRecords(t, f)
	applies := f.Applies()
	r := applyCmds(t, f, cmd)[0]
	if r.Err != nil {
		t.Fatalf("replay of %v: %v", cmd, r.Err)
	}
	mustBeReplayOf(t, r.Result, want)
	if !bytes.Equal(hash, mustHash(t, f)) {
		t.Fatalf("replay of %v changed the state", cmd)
	}
	if got := mustRecords(t, f); got != records {
		t.Fatalf("replay changed the request records from %d to %d", records, got)
	}
	if got := f.Applies() - applies; got != 1 {
		t.Fatalf("Applies grew by %d for a replay, want 1 (a replay counts as an applied command)", got)
	}
	return r.Result
}

// mustBeReplayOf checks that got is want answered again: Replayed set, and
// otherwise equal (revision included).
func mustBeReplayOf(t testing.TB, got, want *raftcmdv1.Result) {
	t.Helper()
	if got == nil || !got.Replayed {
		t.Fatalf("result %v, want a replay of %v", got, want)
	}
	if want.Replayed {
		t.Fatalf("mustBeReplayOf: want %v is itself a replay", want)
	}
	plain := proto.Clone(got).(*raftcmdv1.Result)
	plain.Replayed = false
	if !proto.Equal(plain, want) {
		t.Fatalf("replay = %v, want %v", got, want)
	}
}

// mustFresh checks that r is a freshly applied result at revision idx.
func mustFresh(t testing.TB, r Result, idx uint64) *raftcmdv1.Result {
	t.Helper()
	if r.Err != nil || r.Result == nil {
		t.Fatalf("result %+v, want a fresh application", r)
	}
	if r.Result.Replayed || r.Result.Revision != idx {
		t.Fatalf("result %v, want fresh at revision %d", r.Result, idx)
	}
	return r.Result
}

// mustApplyFresh applies cmd alone; it must apply afresh (not replayed)
// at the next index.
func mustApplyFresh(t testing.TB, f *FSM, cmd *raftcmdv1.Command) *raftcmdv1.Result {
	t.Helper()
	idx := f.AppliedIndex() + 1
	return mustFresh(t, applyCmds(t, f, cmd)[0], idx)
}

// requestCommands are commands of every kind that may carry a request id,
// each applicable to a state with namespace "n" and object "o" holding k.
func requestCommands() []struct {
	name string
	cmd  *raftcmdv1.Command
} {
	return []struct {
		name string
		cmd  *raftcmdv1.Command
	}{
		{"batch write", cmdBatch("n", "o", []*raftcmdv1.KeyPut{kput("new", "v"), kput("k", "v2")}, "gone")},
		{"txn", cmdTxn("n", cmps(cmpExists("o", "k", relEq)), ops(opPut("o", "new", "v"), opGet("o", "new"), opDel("o", "k")), nil)},
		{"delete object", cmdDeleteObject("n", "o")},
		{"put namespace", cmdPutNamespace("fresh", 7)},
		{"put existing namespace", cmdPutNamespace("n", 99)},
		{"delete namespace", cmdDeleteNamespace("n", true)},
		{"set member", cmdSetMember("m1", "r:1", "g:1", "h:1")},
	}
}

func mustRequestFSM(t testing.TB) *FSM {
	t.Helper()
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	mustApply1(t, f, cmdPut("n", "o", "k", "v", "gone", "x"))
	return f
}

func TestRequestIDReplayLaterBatch(t *testing.T) {
	for _, tt := range requestCommands() {
		t.Run(tt.name, func(t *testing.T) {
			f := mustRequestFSM(t)
			cmd := withReq(tt.cmd, "req-1", 0, 0)
			first := mustApply1(t, f, cmd)
			if first.Replayed {
				t.Fatalf("first application says replayed: %v", first)
			}
			if got := mustRecords(t, f); got != 1 {
				t.Fatalf("%d request records, want 1", got)
			}
			state := visibleState(t, f)

			// A retry later, with another time stamp and retention, is the
			// same request.
			mustReplay(t, f, cmd, first)
			mustReplay(t, f, withReq(tt.cmd, "req-1", 5000, 0), first)
			mustReplay(t, f, cmd, first)
			if got := visibleState(t, f); got != state {
				t.Fatalf("replays changed the state:\n%s\nwant\n%s", got, state)
			}

			// Without the id, the same command applies again.
			if r := applyCmds(t, f, tt.cmd)[0]; r.Result != nil && r.Result.Replayed {
				t.Fatalf("command without request id was replayed: %v", r.Result)
			}
		})
	}
}

func TestRequestIDReplaySameBatch(t *testing.T) {
	for _, tt := range requestCommands() {
		t.Run(tt.name, func(t *testing.T) {
			f := mustRequestFSM(t)
			twin := mustRequestFSM(t)
			cmd := withReq(tt.cmd, "req-1", 0, 0)
			other := cmdPut("n2", "x", "a", "1") // fails: no namespace n2
			idx := f.AppliedIndex() + 1
			res := applyCmds(t, f, cmd, cmd, other, cmd)
			first := mustFresh(t, res[0], idx)
			for _, i := range []int{1, 3} {
				if res[i].Err != nil {
					t.Fatalf("retry %d: %v", i, res[i].Err)
				}
				mustBeReplayOf(t, res[i].Result, first)
			}
			if !errors.Is(res[2].Err, ErrNamespaceNotFound) {
				t.Fatalf("other command: %+v", res[2])
			}
			// The state is that of applying the command once.
			entries := entriesFor(t, twin, cmd, cmd, other, cmd)
			entries[1].Data, entries[3].Data = nil, nil
			mustApplyBatch(t, twin, entries)
			if !bytes.Equal(mustHash(t, f), mustHash(t, twin)) {
				t.Fatalf("retries in the batch changed the state:\n%s\nwant\n%s", dumpState(t, f), dumpState(t, twin))
			}
			if mustRecords(t, f) != 1 {
				t.Fatalf("%d request records, want 1", mustRecords(t, f))
			}
		})
	}
}

// A replay answers exactly what the first application answered, even
// where applying again would answer differently.
func TestRequestIDReplayIsTheFirstAnswer(t *testing.T) {
	f := mustRequestFSM(t)
	idx := f.AppliedIndex() + 1
	put := withReq(cmdPut("n", "o", "c", "1"), "put-c", 0, 0)
	ns := withReq(cmdPutNamespace("m", 0), "ns-m", 0, 0)
	res := mustApply(t, f, put, ns)
	if got := res[0].GetBatchWrite().GetCreated(); got != 1 {
		t.Fatalf("created = %d, want 1", got)
	}
	if !res[1].GetNamespace().GetCreated() {
		t.Fatalf("namespace result %v, want created", res[1])
	}
	// Change the state under the retries: the key and namespace exist now,
	// and the key has moved on.
	mustApply1(t, f, cmdPut("n", "o", "c", "2"))
	if r := mustReplay(t, f, put, res[0]); r.Revision != idx || r.GetBatchWrite().GetCreated() != 1 {
		t.Fatalf("replayed put = %v", r)
	}
	if r := mustReplay(t, f, ns, res[1]); r.Revision != idx+1 || !r.GetNamespace().GetCreated() {
		t.Fatalf("replayed namespace = %v", r)
	}
	if got := mustGet(t, f, "n", "o", "c"); string(got.Value) != "2" || got.ModRevision != idx+2 {
		t.Fatalf("c = %+v: the replay wrote", got)
	}
	// A replay is answered even after its namespace is gone: the record
	// outlives the data it describes (within its window).
	mustApply1(t, f, cmdDeleteNamespace("n", true))
	mustReplay(t, f, put, res[0])
}

func TestRequestIDReused(t *testing.T) {
	f := mustRequestFSM(t)
	orig := withReq(cmdPut("n", "o", "k", "v1"), "req-1", 0, 0)
	first := mustApply1(t, f, orig)
	tests := []struct {
		name string
		cmd  *raftcmdv1.Command
	}{
		{"different value", cmdPut("n", "o", "k", "v2")},
		{"different key", cmdPut("n", "o", "k2", "v1")},
		{"different object", cmdPut("n", "o2", "k", "v1")},
		{"different encoding", cmdBatch("n", "o", []*raftcmdv1.KeyPut{{Key: "k", Value: []byte("v1"), Encoding: encJS}})},
		{"extra delete", cmdBatch("n", "o", []*raftcmdv1.KeyPut{kput("k", "v1")}, "gone")},
		{"different command", cmdDeleteObject("n", "o")},
		{"txn", cmdTxn("n", nil, ops(opPut("o", "k", "v1")), nil)},
		{"namespace command", cmdPutNamespace("n", 5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mustReject(t, f, withReq(tt.cmd, "req-1", 0, 0), ErrRequestIDReused)
			if !strings.Contains(err.Error(), `"req-1"`) {
				t.Fatalf("error %q does not name the request id", err)
			}
		})
	}
	// The original is still remembered, and still answered.
	mustReplay(t, f, orig, first)
	if got := mustGet(t, f, "n", "o", "k"); string(got.Value) != "v1" || got.ModRevision != first.Revision {
		t.Fatalf("k = %+v", got)
	}

	// In one batch: the second use of the id for another request fails, the
	// first applies, a retry of the first replays.
	idx := f.AppliedIndex() + 1
	a := withReq(cmdPut("n", "o", "x", "a"), "req-2", 0, 0)
	b := withReq(cmdPut("n", "o", "x", "b"), "req-2", 0, 0)
	res := applyCmds(t, f, a, b, a)
	fresh := mustFresh(t, res[0], idx)
	if !errors.Is(res[1].Err, ErrRequestIDReused) || res[1].Result != nil {
		t.Fatalf("reuse in the batch: %+v", res[1])
	}
	mustBeReplayOf(t, res[2].Result, fresh)
	if got := mustGet(t, f, "n", "o", "x"); string(got.Value) != "a" {
		t.Fatalf("x = %q, want a", got.Value)
	}
	if got := mustRecords(t, f); got != 2 {
		t.Fatalf("%d request records, want 2", got)
	}
}

func TestRequestIDScope(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("a", 0), cmdPutNamespace("b", 0))
	idx := f.AppliedIndex() + 1
	cmds := []*raftcmdv1.Command{
		withReq(cmdPut("a", "o", "k", "1"), "same", 0, 0),
		withReq(cmdPut("b", "o", "k", "2"), "same", 0, 0), // another namespace: independent
		withReq(cmdSetMember("m", "r", "g", "h"), "same", 0, 0),
		withReq(cmdPutNamespace("c", 0), "same", 0, 0), // scoped to c itself
		withReq(cmdPut("c", "o", "k", "3"), "same", 0, 0),
	}
	res := applyCmds(t, f, cmds...)
	for i, r := range res {
		if i == 4 {
			// PutNamespace "c" and a write into "c" share the scope.
			if !errors.Is(r.Err, ErrRequestIDReused) {
				t.Fatalf("write into c with c's creation id: %+v, want ErrRequestIDReused", r)
			}
			continue
		}
		mustFresh(t, r, idx+uint64(i))
	}
	if got := mustRecords(t, f); got != 4 {
		t.Fatalf("%d request records, want 4", got)
	}
	for i := 0; i < 4; i++ {
		mustReplay(t, f, cmds[i], res[i].Result)
	}
	// The same id with the same request in another namespace is not a
	// replay of the first.
	mustApplyFresh(t, f, withReq(cmdPut("c", "o", "k", "1"), "same2", 0, 0))
	mustApplyFresh(t, f, withReq(cmdPut("a", "o", "k", "1"), "same2", 0, 0))
}

func TestRequestIDWindow(t *testing.T) {
	f := mustRequestFSM(t)
	cmd := withReq(cmdPut("n", "o", "k", "mine"), "req-1", 1000, reqT0)
	first := mustApply1(t, f, cmd)

	// Within the window (log time < t0 + 1000) a retry is a replay, whatever
	// its own stamp.
	mustReplay(t, f, atTime(cmd, reqT0+999), first)
	mustReplay(t, f, atTime(cmd, reqT0-50_000), first)
	if f.Now() != reqT0+999 {
		t.Fatalf("Now = %d, want %d", f.Now(), reqT0+999)
	}
	// At the window's end the retry is a fresh request.
	second := mustApplyFresh(t, f, atTime(cmd, reqT0+1000))
	idx2 := second.Revision
	if got := mustGet(t, f, "n", "o", "k"); got.ModRevision != idx2 || got.CreateRevision == idx2 {
		t.Fatalf("k = %+v, want rewritten at %d", got, idx2)
	}
	if got := mustRecords(t, f); got != 1 {
		t.Fatalf("%d request records, want 1 (the renewed one)", got)
	}
	// ... remembered from then on for its own window.
	mustReplay(t, f, atTime(cmd, reqT0+1999), second)

	// A later command (without an id) moves log time past the window and
	// the record is removed at the end of its batch; a retry stamped with
	// an old time is then fresh too, since log time never runs backwards.
	mustApply1(t, f, atTime(cmdPut("n", "other", "k", "v"), reqT0+10_000))
	if got := mustRecords(t, f); got != 0 {
		t.Fatalf("%d request records after the window, want 0", got)
	}
	third := mustApplyFresh(t, f, atTime(cmd, reqT0+10))
	if got := mustGet(t, f, "n", "o", "k").ModRevision; got != third.Revision {
		t.Fatalf("k modified at %d, want %d: the fresh retry did not apply", got, third.Revision)
	}
	if got := mustRecords(t, f); got != 1 {
		t.Fatalf("%d request records, want 1", got)
	}

	// A record made in a batch whose later entry passes its window is
	// removed at the end of that batch (as is req-1's, renewed above until
	// t0 + 11000).
	mustApply(t, f,
		withReq(cmdPut("n", "o", "z", "1"), "req-z", 1000, reqT0+20_000),
		atTime(cmdPut("n", "o", "y", "1"), reqT0+30_000),
	)
	if got := mustRecords(t, f); got != 0 {
		t.Fatalf("%d request records, want 0", got)
	}
}

func TestRequestIDDefaultWindow(t *testing.T) {
	f := mustRequestFSM(t)
	cmd := withReq(cmdPut("n", "o", "k", "mine"), "req-1", 0, reqT0)
	first := mustApply1(t, f, cmd)
	mustReplay(t, f, atTime(cmd, reqT0+DefaultRequestRetentionMs-1), first)
	mustReplay(t, f, withReq(cmd, "req-1", -5, reqT0+DefaultRequestRetentionMs-1), first) // negative: the default too
	mustApplyFresh(t, f, atTime(cmd, reqT0+DefaultRequestRetentionMs))
}

// expiryRecordIDs returns the request ids of the stored records of
// namespace ns, in key order.
func expiryRecordIDs(t testing.TB, f *FSM, ns string) []string {
	t.Helper()
	var ids []string
	prefix := requestKey(ns, "")
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRequests).ForEach(func(k, _ []byte) error {
			if bytes.HasPrefix(k, prefix) {
				ids = append(ids, string(k[len(prefix):]))
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("reading request records: %v", err)
	}
	return ids
}

// A batch removes at most expiryBatch expired records, oldest first;
// lookups never see an expired record in the meantime.
func TestRequestExpiryIsBounded(t *testing.T) {
	const n = 600
	for _, tt := range []struct {
		name    string
		now     int64 // log time that starts expiry
		expired int   // records whose window ends at or before now
	}{
		{"all expired", reqT0 + 10_000, n},
		{"half expired", reqT0 + 1000 + 299, 300},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := mustNew(t)
			mustApply1(t, f, cmdPutNamespace("n", 0))
			var cmds []*raftcmdv1.Command
			for i := 0; i < n; i++ {
				// Record i expires at t0 + i + 1000.
				cmds = append(cmds, withReq(cmdPut("n", fmt.Sprintf("o%d", i%7), "k", fmt.Sprint(i)), fmt.Sprintf("req-%04d", i), 1000, reqT0+int64(i)))
			}
			for i := 0; i < n; i += 64 {
				mustApply(t, f, cmds[i:min(i+64, n)]...)
			}
			if got := mustRecords(t, f); got != n {
				t.Fatalf("%d request records, want %d", got, n)
			}
			// The batch that moves time forward removes the oldest 256; each
			// following command entry the next ones, until none is left that has expired.
			mustApply1(t, f, atTime(cmdPut("n", "clock", "k", "v"), tt.now))
			removed, batches := 0, 1
			for {
				removed += min(expiryBatch, tt.expired-removed)
				if got := mustRecords(t, f); got != n-removed {
					t.Fatalf("after %d batches: %d records, want %d", batches, got, n-removed)
				}
				ids := expiryRecordIDs(t, f, "n")
				if want := fmt.Sprintf("req-%04d", removed); len(ids) > 0 && ids[0] != want {
					t.Fatalf("after %d batches the oldest record left is %s, want %s", batches, ids[0], want)
				}
				if removed == tt.expired {
					break
				}
				mustApply1(t, f, atTime(cmdPut("n", "clock", "k", "v"), tt.now)) // expiry runs per command entry
				batches++
			}
			if want := (tt.expired + expiryBatch - 1) / expiryBatch; batches != want {
				t.Fatalf("expiry took %d batches, want %d", batches, want)
			}
			mustApply1(t, f, atTime(cmdPut("n", "clock", "k", "v"), tt.now)) // expiry runs per command entry
			if got := mustRecords(t, f); got != n-tt.expired {
				t.Fatalf("%d records left, want %d", got, n-tt.expired)
			}
			// A removed request applies afresh; one still in its window
			// replays.
			mustApplyFresh(t, f, cmds[0])
			if tt.expired < n {
				r := applyCmds(t, f, cmds[n-1])[0]
				if r.Err != nil || !r.Result.Replayed || r.Result.Revision != uint64(n+1) {
					t.Fatalf("retry of the last request: %+v, want a replay at %d", r, n+1)
				}
			}
		})
	}
}

// windowedPuts is n puts to object o of namespace n, each with a request
// id of its own (r000, r001, ...) and a window of 1,000 ms from reqT0.
func windowedPuts(n int) []*raftcmdv1.Command {
	var cmds []*raftcmdv1.Command
	for i := 0; i < n; i++ {
		cmds = append(cmds, withReq(cmdPut("n", "o", fmt.Sprint(i), "v"), fmt.Sprintf("r%03d", i), 1000, reqT0))
	}
	return cmds
}

// Expired but not yet removed records do not change answers: a retry after
// its window is fresh even while more than expiryBatch records wait.
func TestRequestExpiredBeforeRemoval(t *testing.T) {
	const n = 300
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	cmds := windowedPuts(n)
	mustApply(t, f, cmds...)
	// One batch passes the window and retries the newest request (whose
	// record is not among the first 256 removed).
	idx := f.AppliedIndex() + 1
	res := applyCmds(t, f, atTime(cmdPut("n", "clock", "k", "v"), reqT0+5000), cmds[n-1])
	mustFresh(t, res[1], idx+1)
	// Expiry runs per entry (at most expiryBatch each): the clock entry
	// removed 256 records, the retry's entry the other 44 (r299's old one
	// among them) before r299 was applied afresh, expiring at t0 + 6000.
	if got := expiryRecordIDs(t, f, "n"); !equalStrings(got, []string{fmt.Sprintf("r%03d", n-1)}) {
		t.Fatalf("records left: %q, want only the renewed one", got)
	}
}

// A request id applied again after its window ended, while its old record
// still waits for removal, replaces that record and its entry in the
// expiry index: the old entry, removed later, must not take the new record
// with it before the new window ends.
func TestRequestRenewedBeforeRemoval(t *testing.T) {
	const n = 600
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	cmds := windowedPuts(n)
	for i := 0; i < n; i += 64 {
		mustApply(t, f, cmds[i:min(i+64, n)]...)
	}
	// The clock entry removes r000-r255 and the retry's entry r256-r511:
	// r599's old record is still there when it is applied afresh.
	idx := f.AppliedIndex() + 1
	res := applyCmds(t, f, atTime(cmdPut("n", "clock", "k", "v"), reqT0+5000), cmds[n-1])
	mustFresh(t, res[1], idx+1)
	var entries []string
	if err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRequestExpiry).ForEach(func(k, _ []byte) error {
			if bytes.HasSuffix(k, requestKey("n", "r599")) {
				entries = append(entries, fmt.Sprint(int64(binary.BigEndian.Uint64(k[:8]))-reqT0))
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if !equalStrings(entries, []string{"6000"}) {
		t.Fatalf("r599's expiry entries at t0 + %q ms, want only its new one at t0 + 6000", entries)
	}
	// The other old records go; r599's new one stays and answers a retry
	// within its window.
	mustApply1(t, f, atTime(cmdPut("n", "clock", "k", "v"), reqT0+5000))
	if got := expiryRecordIDs(t, f, "n"); !equalStrings(got, []string{"r599"}) {
		t.Fatalf("records left: %q, want only the renewed one", got)
	}
	r := applyCmds(t, f, atTime(cmds[n-1], reqT0+5500))[0]
	if r.Err != nil || !r.Result.Replayed || r.Result.Revision != idx+1 {
		t.Fatalf("retry within the renewed window: %+v, want a replay of revision %d", r, idx+1)
	}
}

// requestLog is a seeded workload of writes with request ids: retries of
// recent requests, ids reused for other requests, commands that fail,
// transactions, and jumps of log time past the retention window.
func requestLog(seed int64, n int) []*raftcmdv1.Command {
	rng := rand.New(rand.NewSource(seed))
	now := int64(reqT0)
	var sent []*raftcmdv1.Command
	cmds := []*raftcmdv1.Command{cmdPutNamespace("a", 0), cmdPutNamespace("b", 40)}
	for len(cmds) < n {
		now += int64(rng.Intn(50))
		if rng.Intn(40) == 0 {
			now += 3000 // past every window below
		}
		ns := []string{"a", "a", "a", "a", "b", "b", "b", "b", "b", "missing"}[rng.Intn(10)]
		obj := fmt.Sprintf("o%d", rng.Intn(4))
		val := strings.Repeat("v", rng.Intn(30))
		id := fmt.Sprintf("id-%d", rng.Intn(40))
		retention := int64(500 + rng.Intn(2000))
		var c *raftcmdv1.Command
		switch r := rng.Intn(10); {
		case r < 3 && len(sent) > 0: // a retry of an earlier request
			c = atTime(sent[len(sent)-1-rng.Intn(min(len(sent), 20))], now)
			cmds = append(cmds, c)
			continue
		case r < 6:
			c = cmdPut(ns, obj, fmt.Sprintf("k%d", rng.Intn(5)), val)
		case r < 8:
			c = cmdTxn(ns,
				cmps(cmpExists(obj, fmt.Sprintf("k%d", rng.Intn(5)), relEq)),
				ops(opPut(obj, "t", val), opGet(obj, "k1"), opList(obj, txnList{limit: 3})),
				ops(opDelRange(obj, "k", "", ""), opPut(fmt.Sprintf("o%d", rng.Intn(4)), "f", val)))
		case r < 9:
			c = cmdDel(ns, obj, fmt.Sprintf("k%d", rng.Intn(5)))
		default:
			c = cmdDeleteObject(ns, obj)
		}
		if rng.Intn(5) != 0 {
			c = withReq(c, id, retention, now)
			sent = append(sent, c)
		} else {
			c = atTime(c, now)
		}
		cmds = append(cmds, c)
	}
	return cmds
}

func TestRequestIDSameLogSameState(t *testing.T) {
	const n = 800
	entries := logEntries(t, requestLog(7, n))
	one := mustNew(t)
	resOne := applyInBatches(t, one, entries, func() int { return 1 })
	rng := rand.New(rand.NewSource(3))
	random := mustNew(t)
	resRandom := applyInBatches(t, random, entries, func() int { return 1 + rng.Intn(64) })
	same := mustNew(t)
	resSame := applyInBatches(t, same, entries, func() int { return 1 })
	// The others keep every batch in one write transaction (fewer than
	// commitEntries entries), where expiry seeks from the entry it removed
	// last (expiryHint); this one commits after each, so each entry's
	// expiry starts from the first key of a committed index.
	committed := mustNew(t)
	resCommitted := applyInBatches(t, committed, entries, func() int { mustRecords(t, committed); return 1 })
	// The others take the writes of a transaction refused over its quota
	// back in place; this one rolls the write transaction back and applies
	// it again.
	redo := mustNew(t)
	redo.redoRefused = true
	resRedo := applyInBatches(t, redo, entries, func() int { return 1 + rng.Intn(64) })

	var replayed, reused, fresh, failed int
	for i := range entries {
		if !sameResult(resOne[i], resRandom[i]) || !sameResult(resOne[i], resSame[i]) || !sameResult(resOne[i], resCommitted[i]) || !sameResult(resOne[i], resRedo[i]) {
			t.Fatalf("entry %d answered differently: %+v / %+v / %+v / %+v / %+v", i+1, resOne[i], resRandom[i], resSame[i], resCommitted[i], resRedo[i])
		}
		switch r := resOne[i]; {
		case errors.Is(r.Err, ErrRequestIDReused):
			reused++
		case r.Err != nil:
			failed++
		case r.Result.Replayed:
			replayed++
		default:
			fresh++
		}
	}
	t.Logf("%d fresh, %d replayed, %d reused ids, %d failed; %d records left", fresh, replayed, reused, failed, mustRecords(t, one))
	if replayed < n/20 || reused < n/50 || failed < n/20 || fresh < n/4 {
		t.Fatalf("workload too tame: %d fresh, %d replayed, %d reused, %d failed", fresh, replayed, reused, failed)
	}
	mustConsistent(t, one)
	// Transactions were refused after they wrote: taken back in place by
	// the others, rolled back (and the waiting batches applied again) by
	// redo.
	if random.reapplied != 0 || redo.reapplied == 0 {
		t.Fatalf("entries applied again: %d taking writes back, %d rolling back; want none and some", random.reapplied, redo.reapplied)
	}
	hash, snap := mustHash(t, one), mustSnapshot(t, one)
	for name, f := range map[string]*FSM{"same batches": same, "random batches": random, "committed batches": committed, "rolled back": redo} {
		if !bytes.Equal(hash, mustHash(t, f)) {
			t.Fatalf("%s: hash differs", name)
		}
		if !bytes.Equal(snap, mustSnapshot(t, f)) {
			t.Fatalf("%s: snapshot differs", name)
		}
		if mustRecords(t, f) != mustRecords(t, one) {
			t.Fatalf("%s: %d request records, want %d", name, mustRecords(t, f), mustRecords(t, one))
		}
	}
}

// Request records survive a restart and travel in snapshots.
func TestRequestIDsPersist(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	cmd := withReq(cmdPut("n", "o", "k", "v"), "req-1", 0, 0)
	first := mustApply1(t, f, cmd)
	snap := mustSnapshot(t, f)
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	f = mustOpen(t, dir)
	mustReplay(t, f, cmd, first)

	g := mustNew(t)
	mustRestore(t, g, snap)
	if got := mustRecords(t, g); got != 1 {
		t.Fatalf("restored FSM has %d request records, want 1", got)
	}
	mustReplay(t, g, cmd, first)
	mustReject(t, g, withReq(cmdPut("n", "o", "k", "other"), "req-1", 0, 0), ErrRequestIDReused)
}

// A command that fails is not remembered: a retry after the cause is fixed
// applies.
func TestRequestIDFailedNotRemembered(t *testing.T) {
	t.Run("checked before writing", func(t *testing.T) {
		f := mustNew(t)
		cmd := withReq(cmdPut("n", "o", "k", "v"), "req-1", 0, 0)
		mustReject(t, f, cmd, ErrNamespaceNotFound)
		if got := mustRecords(t, f); got != 0 {
			t.Fatalf("%d request records after a failure", got)
		}
		mustApply1(t, f, cmdPutNamespace("n", 0))
		first := mustApplyFresh(t, f, cmd)
		mustReplay(t, f, cmd, first)
	})
	t.Run("quota, failing after writing", func(t *testing.T) {
		f := mustNew(t)
		mustApply1(t, f, cmdPutNamespace("q", 5))
		cmd := withReq(cmdPut("q", "o", "k", "too long"), "req-1", 0, 0)
		txn := withReq(cmdTxn("q", nil, ops(opPut("o2", "a", "1"), opPut("o", "k", "too long")), nil), "req-2", 0, 0)
		mustReject(t, f, cmd, ErrQuotaExceeded)
		mustReject(t, f, txn, ErrQuotaExceeded)
		if got := mustRecords(t, f); got != 0 {
			t.Fatalf("%d request records after a failure", got)
		}
		mustApply1(t, f, cmdPutNamespace("q", 0))
		first := mustApplyFresh(t, f, cmd)
		mustReplay(t, f, cmd, first)
		mustApplyFresh(t, f, txn)
	})
	t.Run("in one batch", func(t *testing.T) {
		f := mustNew(t)
		mustApply1(t, f, cmdPutNamespace("q", 5))
		missing := withReq(cmdPut("n", "o", "k", "v"), "req-1", 0, 0)
		big := withReq(cmdPut("q", "o", "k", "too long"), "req-2", 0, 0)
		idx := f.AppliedIndex() + 1
		res := applyCmds(t, f,
			missing, big, // both fail
			cmdPutNamespace("n", 0), cmdPutNamespace("q", 0),
			missing, big, // both apply
			missing, big, // both replay
		)
		if !errors.Is(res[0].Err, ErrNamespaceNotFound) || !errors.Is(res[1].Err, ErrQuotaExceeded) {
			t.Fatalf("first attempts: %+v, %+v", res[0], res[1])
		}
		a := mustFresh(t, res[4], idx+4)
		b := mustFresh(t, res[5], idx+5)
		mustBeReplayOf(t, res[6].Result, a)
		mustBeReplayOf(t, res[7].Result, b)
		if got := mustRecords(t, f); got != 2 {
			t.Fatalf("%d request records, want 2", got)
		}
		mustConsistent(t, f)
	})
	t.Run("replay across a rolled back batch", func(t *testing.T) {
		f := mustNew(t)
		mustApply1(t, f, cmdPutNamespace("q", 5))
		cmd := withReq(cmdPut("q", "o", "k", "v"), "req-1", 0, 0)
		idx := f.AppliedIndex() + 1
		// The quota failure in the middle rolls the batch back and applies
		// it again; the request before it is remembered once and the retry
		// after it replays.
		res := applyCmds(t, f, cmd, cmdPut("q", "o", "big", "too long"), cmd)
		first := mustFresh(t, res[0], idx)
		if !errors.Is(res[1].Err, ErrQuotaExceeded) {
			t.Fatalf("middle command: %+v", res[1])
		}
		mustBeReplayOf(t, res[2].Result, first)
		if got := mustRecords(t, f); got != 1 {
			t.Fatalf("%d request records, want 1", got)
		}
	})
}

// A replayed txn that took its failure branch answers with the results
// stored then, not with what its ops would read now.
func TestRequestIDReplayFailedTxn(t *testing.T) {
	f := mustRequestFSM(t)
	cmd := withReq(cmdTxn("n",
		cmps(cmpValue("o", "k", relEq, "expected", encBin)),
		ops(opPut("o", "k", "expected+1")),
		ops(opGet("o", "k"), opPut("o", "audit", "1"), opList("o", txnList{limit: 10})),
	), "cas-1", 0, 0)
	idx := f.AppliedIndex() + 1
	first := mustApply1(t, f, cmd)
	tr := first.GetTxn()
	if tr.Succeeded || len(tr.Results) != 3 {
		t.Fatalf("txn = %v, want the failure branch", tr)
	}
	if got := tr.Results[0].GetGet().GetKv(); string(got.GetValue()) != "v" {
		t.Fatalf("get = %v", got)
	}
	if !tr.Results[1].GetPut().GetCreated() {
		t.Fatalf("put = %v, want created", tr.Results[1])
	}
	if got := storedKeys(tr.Results[2].GetList().Kvs); !equalStrings(got, []string{fmt.Sprintf("audit=1@%d/%d", idx, idx), "gone=x@2/2", "k=v@2/2"}) {
		t.Fatalf("list = %q", got)
	}

	// Now make the compare hold: a retry still answers the failure branch
	// as stored, and neither branch runs again.
	mustApply1(t, f, cmdPut("n", "o", "k", "expected"))
	r := mustReplay(t, f, cmd, first)
	if r.GetTxn().Succeeded || string(r.GetTxn().Results[0].GetGet().GetKv().GetValue()) != "v" {
		t.Fatalf("replayed txn = %v", r)
	}
	if got := mustGet(t, f, "n", "o", "k"); string(got.Value) != "expected" {
		t.Fatalf("k = %q: the success branch ran on a replay", got.Value)
	}
	if got := mustGet(t, f, "n", "o", "audit"); got.ModRevision != idx {
		t.Fatalf("audit rewritten at %d", got.ModRevision)
	}
	// The same txn under a new id does run, and succeeds.
	if tr := mustTxn(t, f, withReq(cmd, "cas-2", 0, 0)); !tr.Succeeded {
		t.Fatalf("txn under a new id = %v", tr)
	}
}

// uuidLike returns a deterministic 36-character id in the shape of a UUID
// for i.
func uuidLike(i uint64) string {
	x := i*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
	y := (x ^ x>>31) * 0xBF58476D1CE4E5B9
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", uint32(x>>32), uint16(x>>16), uint16(y>>48), uint16(y>>32), y&0xFFFFFFFFFFFF)
}

// requestCost is what n writes leave on disk.
type requestCost struct {
	records      int   // request records added
	file0, file1 int64 // size of state.db before and after
	fileBytes    int64 // growth of state.db
	usedBytes    int64 // growth of the page high-water mark (bbolt's Tx.Size)
	liveBytes    int64 // growth of the high-water mark less free pages
	reqBytes     int64 // bytes in use in the requests and request_expiry buckets
}

// measureRequestCost applies n single-key batch writes in batches of 64,
// each with a unique 36-character request id when withIDs, and reports
// what the database grew by.
func measureRequestCost(tb testing.TB, n int, withIDs bool) requestCost {
	tb.Helper()
	dir := tb.TempDir()
	f := mustOpen(tb, dir)
	mustApply1(tb, f, cmdPutNamespace("n", 0))
	path := filepath.Join(dir, "state.db")
	type sizes struct{ file, used, live, req int64 }
	measure := func() (s sizes) {
		st, err := os.Stat(path)
		if err != nil {
			tb.Fatalf("stat: %v", err)
		}
		s.file = st.Size()
		err = f.view(func(tx *bolt.Tx) error {
			s.used = tx.Size()
			s.live = s.used - int64(tx.DB().Stats().FreePageN*tx.DB().Info().PageSize)
			for _, b := range [][]byte{bucketRequests, bucketRequestExpiry} {
				bs := tx.Bucket(b).Stats()
				s.req += int64(bs.LeafInuse + bs.BranchInuse)
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("view: %v", err)
		}
		return s
	}
	records0 := mustRecords(tb, f)
	s0 := measure()
	const batch = 64
	cmds := make([]*raftcmdv1.Command, 0, batch)
	for i := 0; i < n; i += batch {
		cmds = cmds[:0]
		for j := i; j < min(i+batch, n); j++ {
			c := cmdPut("n", fmt.Sprintf("obj-%03d", j%100), fmt.Sprintf("key-%06d", j), "value-0123456789")
			c.TimeUnixMs = reqT0 + int64(j) // n ms: well within the default window
			if withIDs {
				c.RequestId = uuidLike(uint64(j))
			}
			cmds = append(cmds, c)
		}
		entries := entriesFor(tb, f, cmds...)
		for k, r := range mustApplyBatch(tb, f, entries) {
			if r.Err != nil {
				tb.Fatalf("entry %d: %v", entries[k].Index, r.Err)
			}
		}
	}
	s1 := measure()
	return requestCost{
		records:   mustRecords(tb, f) - records0,
		file0:     s0.file,
		file1:     s1.file,
		fileBytes: s1.file - s0.file,
		usedBytes: s1.used - s0.used,
		liveBytes: s1.live - s0.live,
		reqBytes:  s1.req - s0.req,
	}
}

// TestRequestRecordCost logs what remembering a request costs on disk. It
// asserts only that every request was remembered.
func TestRequestRecordCost(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 2 x 20000 entries")
	}
	const n = 20000
	if len(uuidLike(12345)) != 36 {
		t.Fatalf("uuidLike gives %q", uuidLike(12345))
	}
	with := measureRequestCost(t, n, true)
	without := measureRequestCost(t, n, false)
	if with.records != n || without.records != 0 {
		t.Fatalf("request records: %d with ids, %d without; want %d and 0", with.records, without.records, n)
	}
	per := func(b int64) float64 { return float64(b) / n }
	for _, r := range []struct {
		name string
		c    requestCost
	}{{"with 36-byte request ids", with}, {"without request ids", without}} {
		t.Logf("N=%d writes %s: state.db %d -> %d bytes (+%.1f/write); pages to high-water mark +%.1f/write, live pages +%.1f/write; request buckets in use %.1f bytes/write",
			n, r.name, r.c.file0, r.c.file1, per(r.c.fileBytes), per(r.c.usedBytes), per(r.c.liveBytes), per(r.c.reqBytes))
	}
	t.Logf("cost per remembered request (with - without): state.db %.1f bytes, high-water mark %.1f bytes, live pages %.1f bytes, record bytes in use %.1f",
		per(with.fileBytes-without.fileBytes), per(with.usedBytes-without.usedBytes), per(with.liveBytes-without.liveBytes), per(with.reqBytes))
	t.Logf("(bbolt grows state.db in steps of its AllocSize, 16 MiB, past the high-water mark, so the file size moves in steps; the page counts are the measure)")
}

// BenchmarkRequestRecordCost reports the bytes each remembered request
// adds to the database (used pages, and the file), against the same
// writes without request ids.
func BenchmarkRequestRecordCost(b *testing.B) {
	for _, withIDs := range []bool{true, false} {
		b.Run(fmt.Sprintf("ids=%v", withIDs), func(b *testing.B) {
			n := max(b.N, 1000)
			b.ResetTimer()
			c := measureRequestCost(b, n, withIDs)
			b.StopTimer()
			b.ReportMetric(float64(c.usedBytes)/float64(n), "bytes/request")
			b.ReportMetric(float64(c.liveBytes)/float64(n), "live-bytes/request")
			b.ReportMetric(float64(c.fileBytes)/float64(n), "file-bytes/request")
			b.ReportMetric(float64(c.reqBytes)/float64(n), "record-bytes/request")
		})
	}
}

// The digest is stored in request records: it must stay the same across
// releases for a retried command to be recognised after an upgrade, and
// computing it must leave the command as it was.
func TestRequestDigestStable(t *testing.T) {
	cmd := cmdPut("ns", "o", "k", "v")
	cmd.Version, cmd.TimeUnixMs, cmd.RequestId, cmd.RequestRetentionMs = CommandVersion, 1_700_000_000_000, "req-1", 60_000
	before := proto.Clone(cmd)
	d := requestDigest(cmd)
	if got, want := hex.EncodeToString(d[:]), "b2862ff7ed7a675a0fdfa04a56779f6361a5f3e150011a7913bfae2ba3e46c11"; got != want {
		t.Fatalf("digest %s, want %s", got, want)
	}
	if !proto.Equal(cmd, before) {
		t.Fatalf("requestDigest changed the command: %v, was %v", cmd, before)
	}
	other := proto.Clone(cmd).(*raftcmdv1.Command)
	other.TimeUnixMs, other.RequestId, other.RequestRetentionMs = 1, "req-2", 0
	if requestDigest(other) != d {
		t.Fatal("the digest depends on the time, the request id or the retention")
	}
}
