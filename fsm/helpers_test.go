package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/proto"
)

// Helpers shared by the fsm tests. Commands are built by the cmdX functions
// and applied through ApplyBatch by mustApply and friends, each entry at the
// next index after the FSM's applied index.

// baseTimeMs is the log time of the first test command; every entry adds a
// second so that Now moves with the index.
const baseTimeMs = 1_700_000_000_000

// mustOpen opens (or reopens) an FSM in dir and closes it when the test
// ends.
func mustOpen(t testing.TB, dir string) *FSM {
	t.Helper()
	f, err := Open(Options{Dir: dir, NoSync: true})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// mustNew opens an empty FSM in a fresh directory.
func mustNew(t testing.TB) *FSM {
	t.Helper()
	return mustOpen(t, t.TempDir())
}

// mustEncode encodes cmd as a log entry's data. Version and time are filled
// in when unset.
func mustEncode(t testing.TB, index uint64, cmd *raftcmdv1.Command) []byte {
	t.Helper()
	cmd = proto.Clone(cmd).(*raftcmdv1.Command)
	if cmd.Version == 0 {
		cmd.Version = CommandVersion
	}
	if cmd.TimeUnixMs == 0 {
		cmd.TimeUnixMs = baseTimeMs + int64(index)*1000
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		t.Fatalf("marshal command: %v", err)
	}
	return b
}

// entriesFor encodes cmds as entries following the FSM's applied index.
func entriesFor(t testing.TB, f *FSM, cmds ...*raftcmdv1.Command) []Entry {
	t.Helper()
	return entriesAt(t, f.AppliedIndex()+1, cmds...)
}

// entriesAt encodes cmds as entries at indexes first, first+1...
func entriesAt(t testing.TB, first uint64, cmds ...*raftcmdv1.Command) []Entry {
	t.Helper()
	entries := make([]Entry, len(cmds))
	for i, c := range cmds {
		idx := first + uint64(i)
		entries[i] = Entry{Index: idx, Data: mustEncode(t, idx, c)}
	}
	return entries
}

// mustApplyBatch applies entries and fails the test if the database
// cannot be written.
func mustApplyBatch(t testing.TB, f *FSM, entries []Entry) []Result {
	t.Helper()
	res, err := f.ApplyBatch(entries)
	if err != nil {
		t.Fatalf("ApplyBatch: %v", err)
	}
	return res
}

// applyCmds applies cmds in one ApplyBatch and returns its results.
func applyCmds(t testing.TB, f *FSM, cmds ...*raftcmdv1.Command) []Result {
	t.Helper()
	entries := entriesFor(t, f, cmds...)
	res := mustApplyBatch(t, f, entries)
	if len(res) != len(entries) {
		t.Fatalf("ApplyBatch returned %d results for %d entries", len(res), len(entries))
	}
	if want := entries[len(entries)-1].Index; f.AppliedIndex() != want {
		t.Fatalf("AppliedIndex = %d after ApplyBatch, want %d", f.AppliedIndex(), want)
	}
	return res
}

// mustApply applies cmds in one batch and fails the test unless every one
// succeeds. It returns the results, whose revisions it has checked.
func mustApply(t testing.TB, f *FSM, cmds ...*raftcmdv1.Command) []*raftcmdv1.Result {
	t.Helper()
	first := f.AppliedIndex() + 1
	res := applyCmds(t, f, cmds...)
	out := make([]*raftcmdv1.Result, len(res))
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("command %d (%v): unexpected error: %v", i, cmds[i], r.Err)
		}
		if r.Result == nil {
			t.Fatalf("command %d (%v): nil result", i, cmds[i])
		}
		if want := first + uint64(i); r.Result.Revision != want {
			t.Fatalf("command %d: revision %d, want %d", i, r.Result.Revision, want)
		}
		out[i] = r.Result
	}
	return out
}

// mustApply1 applies one command that must succeed.
func mustApply1(t testing.TB, f *FSM, cmd *raftcmdv1.Command) *raftcmdv1.Result {
	t.Helper()
	return mustApply(t, f, cmd)[0]
}

// mustReject applies cmd, which must fail with an error matching want and
// change nothing but the applied index.
func mustReject(t testing.TB, f *FSM, cmd *raftcmdv1.Command, want error) error {
	t.Helper()
	before := mustHash(t, f)
	idx := f.AppliedIndex()
	res := applyCmds(t, f, cmd)[0]
	if !errors.Is(res.Err, want) {
		t.Fatalf("%v: error %v, want %v", cmd, res.Err, want)
	}
	if res.Result != nil {
		t.Fatalf("%v: rejected command has result %v", cmd, res.Result)
	}
	if got := f.AppliedIndex(); got != idx+1 {
		t.Fatalf("applied index %d after rejected command, want %d", got, idx+1)
	}
	if after := mustHash(t, f); !bytes.Equal(before, after) {
		t.Fatalf("%v: rejected command (%v) changed the state hash", cmd, res.Err)
	}
	return res.Err
}

func mustHash(t testing.TB, f *FSM) []byte {
	t.Helper()
	h, err := f.Hash()
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	return h
}

// mustPanic runs fn and returns the value it panicked with, failing the
// test if it returns normally.
func mustPanic(t testing.TB, fn func()) (v any) {
	t.Helper()
	defer func() {
		t.Helper()
		v = recover()
		if v == nil {
			t.Fatalf("did not panic")
		}
	}()
	fn()
	return nil
}

// Command builders.

func cmdPutNamespace(name string, maxObjectBytes uint64) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_PutNamespace{PutNamespace: &raftcmdv1.PutNamespace{
		Name: name, Settings: &raftcmdv1.NamespaceSettings{MaxObjectBytes: maxObjectBytes},
	}}}
}

func cmdDeleteNamespace(name string, force bool) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_DeleteNamespace{DeleteNamespace: &raftcmdv1.DeleteNamespace{
		Name: name, Force: force,
	}}}
}

func cmdBatch(ns, object string, puts []*raftcmdv1.KeyPut, deletes ...string) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_BatchWrite{BatchWrite: &raftcmdv1.BatchWrite{
		Namespace: ns, Object: object, Puts: puts, Deletes: deletes,
	}}}
}

// cmdPut puts binary key/value pairs given as key, value, key, value...
func cmdPut(ns, object string, kv ...string) *raftcmdv1.Command {
	if len(kv)%2 != 0 {
		panic("cmdPut: odd number of key/value strings")
	}
	var puts []*raftcmdv1.KeyPut
	for i := 0; i < len(kv); i += 2 {
		puts = append(puts, kput(kv[i], kv[i+1]))
	}
	return cmdBatch(ns, object, puts)
}

func cmdDel(ns, object string, keys ...string) *raftcmdv1.Command {
	return cmdBatch(ns, object, nil, keys...)
}

func kput(key, value string) *raftcmdv1.KeyPut {
	return &raftcmdv1.KeyPut{Key: key, Value: []byte(value), Encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY}
}

func cmdDeleteObject(ns, object string) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_DeleteObject{DeleteObject: &raftcmdv1.DeleteObject{
		Namespace: ns, Object: object,
	}}}
}

func cmdSetMember(id, raftAddr, grpcAddr, httpAddr string) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_SetMember{SetMember: &raftcmdv1.SetMember{
		Member: &raftcmdv1.Member{Id: id, RaftAddr: raftAddr, GrpcAddr: grpcAddr, HttpAddr: httpAddr},
	}}}
}

func cmdRemoveMember(id string) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_RemoveMember{RemoveMember: &raftcmdv1.RemoveMember{Id: id}}}
}

// Query helpers.

func mustGet(t testing.TB, f *FSM, ns, object, key string) KeyValue {
	t.Helper()
	kv, err := f.Get(ns, object, key)
	if err != nil {
		t.Fatalf("Get(%q, %q, %q): %v", ns, object, key, err)
	}
	return kv
}

func mustObject(t testing.TB, f *FSM, ns, object string) ObjectInfo {
	t.Helper()
	info, err := f.Object(ns, object)
	if err != nil {
		t.Fatalf("Object(%q, %q): %v", ns, object, err)
	}
	return info
}

func mustNamespace(t testing.TB, f *FSM, name string) *raftcmdv1.Namespace {
	t.Helper()
	ns, err := f.Namespace(name)
	if err != nil {
		t.Fatalf("Namespace(%q): %v", name, err)
	}
	return ns
}

func mustList(t testing.TB, f *FSM, ns, object string, r Range) ([]KeyValue, bool) {
	t.Helper()
	kvs, more, err := f.List(ns, object, r)
	if err != nil {
		t.Fatalf("List(%q, %q, %+v): %v", ns, object, r, err)
	}
	return kvs, more
}

// mustListAll returns every key of an object in order, with values.
func mustListAll(t testing.TB, f *FSM, ns, object string) []KeyValue {
	t.Helper()
	kvs, more := mustList(t, f, ns, object, Range{Limit: 1 << 30})
	if more {
		t.Fatalf("List(%q, %q) of everything says more follow", ns, object)
	}
	return kvs
}

func mustObjects(t testing.TB, f *FSM, ns, prefix, after string, limit int) ([]ObjectInfo, bool) {
	t.Helper()
	infos, more, err := f.Objects(ns, prefix, after, limit)
	if err != nil {
		t.Fatalf("Objects(%q, %q, %q, %d): %v", ns, prefix, after, limit, err)
	}
	return infos, more
}

func mustShardStats(t testing.TB, f *FSM) []ShardStat {
	t.Helper()
	s, err := f.ShardStats()
	if err != nil {
		t.Fatalf("ShardStats: %v", err)
	}
	if len(s) != NumShards {
		t.Fatalf("ShardStats returned %d shards, want %d", len(s), NumShards)
	}
	return s
}

func mustNamespaces(t testing.TB, f *FSM) []*raftcmdv1.Namespace {
	t.Helper()
	nss, err := f.Namespaces()
	if err != nil {
		t.Fatalf("Namespaces: %v", err)
	}
	return nss
}

func mustMembers(t testing.TB, f *FSM) []*raftcmdv1.Member {
	t.Helper()
	ms, err := f.Members()
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	return ms
}

func keysOf(kvs []KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

func namesOf(infos []ObjectInfo) []string {
	out := make([]string, len(infos))
	for i, o := range infos {
		out[i] = o.Name
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// dumpState renders everything the query API can see, in a stable order,
// so that two FSMs can be compared through their public surface.
func dumpState(t testing.TB, f *FSM) string {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "applied=%d now=%d\n", f.AppliedIndex(), f.Now())
	for _, m := range mustMembers(t, f) {
		fmt.Fprintf(&b, "member %q %q %q %q\n", m.Id, m.RaftAddr, m.GrpcAddr, m.HttpAddr)
	}
	for _, ns := range mustNamespaces(t, f) {
		fmt.Fprintf(&b, "ns %q max=%d create=%d mod=%d objects=%d\n", ns.Name, ns.GetSettings().GetMaxObjectBytes(),
			ns.CreateRevision, ns.ModRevision, ns.ObjectCount)
		objs, _ := mustObjects(t, f, ns.Name, "", "", 1<<30)
		for _, o := range objs {
			fmt.Fprintf(&b, "  object %q rev=%d create=%d keys=%d bytes=%d shard=%d\n", o.Name, o.Revision, o.CreateRevision, o.Keys, o.Bytes, o.Shard)
			for _, kv := range mustListAll(t, f, ns.Name, o.Name) {
				fmt.Fprintf(&b, "    %q=%q enc=%d create=%d mod=%d\n", kv.Key, kv.Value, kv.Encoding, kv.CreateRevision, kv.ModRevision)
			}
		}
	}
	for _, s := range mustShardStats(t, f) {
		if s.Objects != 0 || s.Bytes != 0 {
			fmt.Fprintf(&b, "shard %d objects=%d bytes=%d\n", s.Shard, s.Objects, s.Bytes)
		}
	}
	return b.String()
}

// mustConsistent checks the invariants that tie the stored summaries to
// the stored keys: every object's key count and bytes match its keys, every
// namespace's object count matches its objects, every shard's statistics
// match the objects in it, and no object is empty.
func mustConsistent(t testing.TB, f *FSM) {
	t.Helper()
	var shards [NumShards]ShardStat
	for _, ns := range mustNamespaces(t, f) {
		objs, more := mustObjects(t, f, ns.Name, "", "", 1<<30)
		if more {
			t.Fatalf("Objects(%q) of everything says more follow", ns.Name)
		}
		if uint64(len(objs)) != ns.ObjectCount {
			t.Fatalf("namespace %q: object_count %d, but %d objects listed", ns.Name, ns.ObjectCount, len(objs))
		}
		if !sort.SliceIsSorted(objs, func(i, j int) bool { return objs[i].Name < objs[j].Name }) {
			t.Fatalf("namespace %q: objects not in name order: %q", ns.Name, namesOf(objs))
		}
		for _, o := range objs {
			if o.Shard != ShardOf(ns.Name, o.Name) {
				t.Fatalf("object %q/%q: shard %d, ShardOf says %d", ns.Name, o.Name, o.Shard, ShardOf(ns.Name, o.Name))
			}
			kvs := mustListAll(t, f, ns.Name, o.Name)
			var size uint64
			var maxMod uint64
			for _, kv := range kvs {
				size += uint64(len(kv.Key) + len(kv.Value))
				maxMod = max(maxMod, kv.ModRevision)
				if kv.CreateRevision > kv.ModRevision || kv.CreateRevision < o.CreateRevision {
					t.Fatalf("key %q/%q/%q: create %d mod %d, object created at %d", ns.Name, o.Name, kv.Key, kv.CreateRevision, kv.ModRevision, o.CreateRevision)
				}
			}
			if len(kvs) == 0 {
				t.Fatalf("object %q/%q is listed but has no keys", ns.Name, o.Name)
			}
			if uint64(len(kvs)) != o.Keys || size != o.Bytes {
				t.Fatalf("object %q/%q: record says %d keys %d bytes, storage holds %d keys %d bytes", ns.Name, o.Name, o.Keys, o.Bytes, len(kvs), size)
			}
			if o.Revision < maxMod || o.Revision < o.CreateRevision {
				t.Fatalf("object %q/%q: revision %d older than its keys (%d) or its creation (%d)", ns.Name, o.Name, o.Revision, maxMod, o.CreateRevision)
			}
			shards[o.Shard].Objects++
			shards[o.Shard].Bytes += o.Bytes
			shards[o.Shard].Keys += o.Keys
		}
	}
	for i, s := range mustShardStats(t, f) {
		if s.Shard != uint8(i) || s.Objects != shards[i].Objects || s.Bytes != shards[i].Bytes || s.Keys != shards[i].Keys {
			t.Fatalf("shard %d: stats say %d objects %d keys %d bytes (shard field %d), objects add up to %d objects %d keys %d bytes",
				i, s.Objects, s.Keys, s.Bytes, s.Shard, shards[i].Objects, shards[i].Keys, shards[i].Bytes)
		}
	}
}
