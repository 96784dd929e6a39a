package fsm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func TestPutNamespaceCreateAndUpdate(t *testing.T) {
	f := mustNew(t)

	res := mustApply1(t, f, cmdPutNamespace("rooms", 100)).GetNamespace()
	if res == nil || !res.Created || res.DeletedObjects != 0 {
		t.Fatalf("create: result %v, want created", res)
	}
	ns := res.Namespace
	if ns.Name != "rooms" || ns.CreateRevision != 1 || ns.ModRevision != 1 || ns.ObjectCount != 0 || ns.GetSettings().GetMaxObjectBytes() != 100 {
		t.Fatalf("create: namespace %v", ns)
	}
	if got := mustNamespace(t, f, "rooms"); !proto.Equal(got, ns) {
		t.Fatalf("Namespace after create = %v, result said %v", got, ns)
	}

	mustApply1(t, f, cmdPut("rooms", "r1", "k", "v"))

	res = mustApply1(t, f, cmdPutNamespace("rooms", 0)).GetNamespace()
	if res == nil || res.Created {
		t.Fatalf("update: result %v, want not created", res)
	}
	ns = res.Namespace
	if ns.CreateRevision != 1 || ns.ModRevision != 3 || ns.ObjectCount != 1 || ns.GetSettings().GetMaxObjectBytes() != 0 {
		t.Fatalf("update: namespace %v, want create 1, mod 3, 1 object, no quota", ns)
	}
	if got := mustNamespace(t, f, "rooms"); !proto.Equal(got, ns) {
		t.Fatalf("Namespace after update = %v, result said %v", got, ns)
	}

	// A PutNamespace without settings stores empty settings.
	cmd := &raftcmdv1.Command{Op: &raftcmdv1.Command_PutNamespace{PutNamespace: &raftcmdv1.PutNamespace{Name: "bare"}}}
	ns = mustApply1(t, f, cmd).GetNamespace().GetNamespace()
	if ns.Settings == nil || ns.Settings.MaxObjectBytes != 0 {
		t.Fatalf("namespace without settings: %v", ns)
	}

	// The object of "rooms" survived the settings change.
	if kv := mustGet(t, f, "rooms", "r1", "k"); string(kv.Value) != "v" {
		t.Fatalf("Get after namespace update = %q", kv.Value)
	}
	if _, err := f.Namespace("missing"); !errors.Is(err, ErrNamespaceNotFound) {
		t.Fatalf("Namespace(missing) = %v, want ErrNamespaceNotFound", err)
	}
	mustConsistent(t, f)
}

func TestPutNamespaceNames(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"", false},
		{strings.Repeat("a", MaxNamespaceBytes), true},
		{strings.Repeat("a", MaxNamespaceBytes+1), false},
		{".", false},
		{"..", false},
		{"...", true},
		{".hidden", true},
		{"Chat-Rooms_2.v1", true},
		{"a b", false},
		{"a/b", false},
		{"a:b", false},
		{"a\x00", false},
		{"é", false},
		{"ns\n", false},
		{"*", false},
	}
	f := mustNew(t)
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			if tt.ok {
				res := mustApply1(t, f, cmdPutNamespace(tt.name, 0))
				if !res.GetNamespace().GetCreated() {
					t.Fatalf("PutNamespace(%q): %v, want created", tt.name, res)
				}
				mustNamespace(t, f, tt.name)
				return
			}
			mustReject(t, f, cmdPutNamespace(tt.name, 0), ErrInvalidArgument)
			if _, err := f.Namespace(tt.name); !errors.Is(err, ErrNamespaceNotFound) {
				t.Fatalf("Namespace(%q) after rejected create: %v", tt.name, err)
			}
			if err := ValidateNamespace(tt.name); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("ValidateNamespace(%q) = %v", tt.name, err)
			}
		})
	}
}

func TestDeleteNamespace(t *testing.T) {
	f := mustNew(t)
	mustReject(t, f, cmdDeleteNamespace("nope", false), ErrNamespaceNotFound)
	mustReject(t, f, cmdDeleteNamespace("nope", true), ErrNamespaceNotFound)
	mustReject(t, f, cmdDeleteNamespace("", true), ErrNamespaceNotFound)

	// An empty namespace goes without force.
	mustApply1(t, f, cmdPutNamespace("empty", 0))
	res := mustApply1(t, f, cmdDeleteNamespace("empty", false)).GetNamespace()
	if res == nil || res.Namespace.GetName() != "empty" || res.Created || res.DeletedObjects != 0 {
		t.Fatalf("delete empty: %v", res)
	}
	if nss := mustNamespaces(t, f); len(nss) != 0 {
		t.Fatalf("namespaces after delete: %v", nss)
	}

	// "gone" holds three objects, "keep" (and "gone2", whose name extends
	// "gone") one each.
	mustApply(t, f,
		cmdPutNamespace("gone", 0),
		cmdPutNamespace("gone2", 0),
		cmdPutNamespace("keep", 0),
		cmdPut("gone", "a", "k1", "v1", "k2", "v2"),
		cmdPut("gone", "b", "k", "value"),
		cmdPut("gone", "c/d", "k", "v"),
		cmdPut("gone2", "a", "k", "v"),
		cmdPut("keep", "a", "k", "v"),
	)
	before := dumpState(t, f)
	if got := mustNamespace(t, f, "gone").ObjectCount; got != 3 {
		t.Fatalf("object_count = %d, want 3", got)
	}
	err := mustReject(t, f, cmdDeleteNamespace("gone", false), ErrNamespaceNotEmpty)
	if !strings.Contains(err.Error(), "3 objects") {
		t.Fatalf("error %q does not say how many objects", err)
	}
	// dumpState includes the applied index; compare everything after it.
	if after := dumpState(t, f); after[strings.Index(after, "\n"):] != before[strings.Index(before, "\n"):] {
		t.Fatalf("refused delete changed the state:\n%s\nwant\n%s", after, before)
	}

	res = mustApply1(t, f, cmdDeleteNamespace("gone", true)).GetNamespace()
	if res.DeletedObjects != 3 || res.Namespace.GetName() != "gone" || res.Namespace.GetObjectCount() != 0 {
		t.Fatalf("forced delete: %v, want 3 deleted objects", res)
	}
	if _, err := f.Namespace("gone"); !errors.Is(err, ErrNamespaceNotFound) {
		t.Fatalf("Namespace(gone) after delete: %v", err)
	}
	if _, err := f.Get("gone", "a", "k1"); !errors.Is(err, ErrNamespaceNotFound) {
		t.Fatalf("Get in deleted namespace: %v", err)
	}
	if _, _, err := f.Objects("gone", "", "", 10); !errors.Is(err, ErrNamespaceNotFound) {
		t.Fatalf("Objects in deleted namespace: %v", err)
	}
	var names []string
	for _, ns := range mustNamespaces(t, f) {
		names = append(names, ns.Name)
	}
	if !equalStrings(names, []string{"gone2", "keep"}) {
		t.Fatalf("namespaces after forced delete: %q", names)
	}
	mustConsistent(t, f) // shard statistics now count only gone2/a and keep/a
	var objects, size uint64
	for _, s := range mustShardStats(t, f) {
		objects += s.Objects
		size += s.Bytes
	}
	if objects != 2 || size != 4 {
		t.Fatalf("shard stats after forced delete: %d objects %d bytes, want 2 and 4", objects, size)
	}

	// Recreating the namespace does not resurrect its objects.
	mustApply1(t, f, cmdPutNamespace("gone", 0))
	if objs, _ := mustObjects(t, f, "gone", "", "", 10); len(objs) != 0 {
		t.Fatalf("recreated namespace holds %v", objs)
	}
	for _, obj := range []string{"a", "b", "c/d"} {
		if kvs := mustListAll(t, f, "gone", obj); len(kvs) != 0 {
			t.Fatalf("recreated namespace: object %q still has keys %q", obj, keysOf(kvs))
		}
		if _, err := f.Object("gone", obj); !errors.Is(err, ErrObjectNotFound) {
			t.Fatalf("Object(gone, %q) = %v, want ErrObjectNotFound", obj, err)
		}
	}
	if got := mustGet(t, f, "gone2", "a", "k"); string(got.Value) != "v" {
		t.Fatalf("gone2/a/k = %q", got.Value)
	}
	mustConsistent(t, f)
}

func TestBatchWrite(t *testing.T) {
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0)) // index 1

	// index 2: create three keys.
	res := mustApply1(t, f, cmdPut("n", "o", "a", "1", "b", "22", "c", "333")).GetBatchWrite()
	if res.GetCreated() != 3 || res.GetDeleted() != 0 {
		t.Fatalf("first write: %v, want 3 created", res)
	}
	info := mustObject(t, f, "n", "o")
	want := ObjectInfo{Name: "o", Revision: 2, CreateRevision: 2, Keys: 3, Bytes: 3 + 6, Shard: ShardOf("n", "o")}
	if info != want {
		t.Fatalf("object after first write = %+v, want %+v", info, want)
	}
	if got := mustNamespace(t, f, "n").ObjectCount; got != 1 {
		t.Fatalf("object_count = %d, want 1", got)
	}

	// index 3: overwrite b (keeps its create revision), add d as JSON,
	// delete c and a key that does not exist.
	jsonPut := &raftcmdv1.KeyPut{Key: "d", Value: []byte(`{"x":1}`), Encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_JSON}
	res = mustApply1(t, f, cmdBatch("n", "o", []*raftcmdv1.KeyPut{kput("b", "x"), jsonPut}, "c", "zz")).GetBatchWrite()
	if res.GetCreated() != 1 || res.GetDeleted() != 1 {
		t.Fatalf("second write: %v, want 1 created 1 deleted", res)
	}
	wantKVs := []KeyValue{
		{Key: "a", Value: []byte("1"), Encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY, CreateRevision: 2, ModRevision: 2},
		{Key: "b", Value: []byte("x"), Encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY, CreateRevision: 2, ModRevision: 3},
		{Key: "d", Value: []byte(`{"x":1}`), Encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_JSON, CreateRevision: 3, ModRevision: 3},
	}
	mustEqualKVs(t, mustListAll(t, f, "n", "o"), wantKVs)
	if _, err := f.Get("n", "o", "c"); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("Get of deleted key = %v, want ErrKeyNotFound", err)
	}
	info = mustObject(t, f, "n", "o")
	want = ObjectInfo{Name: "o", Revision: 3, CreateRevision: 2, Keys: 3, Bytes: 2 + 2 + 8, Shard: ShardOf("n", "o")}
	if info != want {
		t.Fatalf("object after second write = %+v, want %+v", info, want)
	}

	// index 4: a delete of keys that do not exist changes nothing.
	before := mustHash(t, f)
	res = mustApply1(t, f, cmdDel("n", "o", "nothing", "here")).GetBatchWrite()
	if res.GetCreated() != 0 || res.GetDeleted() != 0 {
		t.Fatalf("no-op delete: %v", res)
	}
	if !bytes.Equal(before, mustHash(t, f)) || mustObject(t, f, "n", "o").Revision != 3 {
		t.Fatalf("a batch that deletes nothing changed the state")
	}
	// ... and on an object that does not exist, does not create it.
	mustApply1(t, f, cmdDel("n", "ghost", "k"))
	if _, err := f.Object("n", "ghost"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("Object(ghost) = %v, want ErrObjectNotFound", err)
	}

	// An empty value is a value.
	mustApply1(t, f, cmdPut("n", "o", "empty", ""))
	if kv := mustGet(t, f, "n", "o", "empty"); kv.Value == nil || len(kv.Value) != 0 {
		t.Fatalf("empty value read back as %#v", kv.Value)
	}
	mustConsistent(t, f)
}

func mustEqualKVs(t testing.TB, got, want []KeyValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d keys %q, want %d keys %q", len(got), keysOf(got), len(want), keysOf(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Key != w.Key || !bytes.Equal(g.Value, w.Value) || (g.Value == nil) != (w.Value == nil) ||
			g.Encoding != w.Encoding || g.CreateRevision != w.CreateRevision || g.ModRevision != w.ModRevision {
			t.Fatalf("key %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestBatchWriteRejected(t *testing.T) {
	long := func(n int) string { return strings.Repeat("k", n) }
	put := func(puts ...*raftcmdv1.KeyPut) []*raftcmdv1.KeyPut { return puts }
	tests := []struct {
		name string
		cmd  *raftcmdv1.Command
		want error
	}{
		{"duplicate put", cmdPut("n", "o", "a", "1", "a", "2"), ErrInvalidArgument},
		{"duplicate delete", cmdDel("n", "o", "a", "a"), ErrInvalidArgument},
		{"put and delete of one key", cmdBatch("n", "o", put(kput("a", "1")), "a"), ErrInvalidArgument},
		{"empty put key", cmdPut("n", "o", "", "1"), ErrInvalidArgument},
		{"empty delete key", cmdDel("n", "o", ""), ErrInvalidArgument},
		{"put key too long", cmdPut("n", "o", long(MaxKeyBytes+1), "1"), ErrInvalidArgument},
		{"delete key too long", cmdDel("n", "o", long(MaxKeyBytes+1)), ErrInvalidArgument},
		{"object name empty", cmdPut("n", "", "a", "1"), ErrInvalidArgument},
		{"object name too long", cmdPut("n", strings.Repeat("o", MaxObjectNameBytes+1), "a", "1"), ErrInvalidArgument},
		{"namespace unknown", cmdPut("missing", "o", "a", "1"), ErrNamespaceNotFound},
		{"namespace invalid", cmdPut("bad ns", "o", "a", "1"), ErrInvalidArgument},
		{"namespace empty", cmdPut("", "o", "a", "1"), ErrInvalidArgument},
		{"encoding unspecified", cmdBatch("n", "o", put(&raftcmdv1.KeyPut{Key: "a", Value: []byte("1")})), ErrInvalidArgument},
		{"encoding unknown", cmdBatch("n", "o", put(&raftcmdv1.KeyPut{Key: "a", Value: []byte("1"), Encoding: 7})), ErrInvalidArgument},
		{"one bad put among good ones", cmdBatch("n", "o", put(kput("a", "1"), kput("b", "2"), &raftcmdv1.KeyPut{Key: "c"})), ErrInvalidArgument},
		{"good puts, one bad delete", cmdBatch("n", "o", put(kput("a", "1")), "x", ""), ErrInvalidArgument},
	}
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("n", 0), cmdPut("n", "o", "a", "old", "x", "y"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dumpState(t, f)
			mustReject(t, f, tt.cmd, tt.want)
			after := dumpState(t, f)
			if before[strings.Index(before, "\n"):] != after[strings.Index(after, "\n"):] {
				t.Fatalf("rejected batch changed the state:\n%s\nwant\n%s", after, before)
			}
		})
	}

	// The limits themselves are allowed.
	limitKey := long(MaxKeyBytes)
	limitName := strings.Repeat("é", MaxObjectNameBytes/2)
	res := mustApply1(t, f, cmdPut("n", limitName, limitKey, "v")).GetBatchWrite()
	if res.GetCreated() != 1 {
		t.Fatalf("write at the limits: %v", res)
	}
	if kv := mustGet(t, f, "n", limitName, limitKey); string(kv.Value) != "v" {
		t.Fatalf("key at the limit read back as %q", kv.Value)
	}
	mustConsistent(t, f)
}

// Keys and object names must be valid UTF-8. Proto3 string fields cannot
// carry anything else: the leader cannot encode such a command, and an entry
// that holds one anyway does not decode, so it stops the node like any
// undecodable entry (see TestApplyPanicsOnUnknownEntries). The FSM's own
// checks stay as a second line.
func TestInvalidUTF8(t *testing.T) {
	for _, s := range []string{"a\xffb", "\xc3", "o\xfe", "\xed\xa0\x80"} {
		if err := ValidateKey("key", s); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidArgument", s, err)
		}
		if err := ValidateObjectName(s); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidateObjectName(%q) = %v, want ErrInvalidArgument", s, err)
		}
		for _, cmd := range []*raftcmdv1.Command{cmdPut("n", "o", s, "v"), cmdDel("n", "o", s), cmdPut("n", s, "k", "v")} {
			cmd.Version = CommandVersion
			if _, err := proto.Marshal(cmd); err == nil {
				t.Errorf("%v with invalid UTF-8 %q encoded without error", cmd, s)
			}
		}
	}
	for _, s := range []string{"ok", "é", "日本語", "\U0010FFFF", "a/b c"} {
		if err := ValidateKey("key", s); err != nil {
			t.Errorf("ValidateKey(%q) = %v", s, err)
		}
		if err := ValidateObjectName(s); err != nil {
			t.Errorf("ValidateObjectName(%q) = %v", s, err)
		}
	}

	// Hand-encode a BatchWrite whose key is not UTF-8.
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	hash := mustHash(t, f)
	var put, bw, cmd []byte
	put = protowire.AppendString(protowire.AppendTag(put, 1, protowire.BytesType), "k\xff")
	put = protowire.AppendVarint(protowire.AppendTag(put, 3, protowire.VarintType), uint64(raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY))
	bw = protowire.AppendString(protowire.AppendTag(bw, 1, protowire.BytesType), "n")
	bw = protowire.AppendString(protowire.AppendTag(bw, 2, protowire.BytesType), "o")
	bw = protowire.AppendBytes(protowire.AppendTag(bw, 3, protowire.BytesType), put)
	cmd = protowire.AppendVarint(protowire.AppendTag(cmd, 1, protowire.VarintType), CommandVersion)
	cmd = protowire.AppendBytes(protowire.AppendTag(cmd, 12, protowire.BytesType), bw)
	mustPanic(t, func() { f.ApplyBatch([]Entry{{Index: 2, Data: cmd}}) })
	if f.AppliedIndex() != 1 || !bytes.Equal(hash, mustHash(t, f)) {
		t.Fatalf("the undecodable entry changed the state")
	}
}

// A rejected command inside a batch changes nothing, and neither stops nor
// undoes its neighbours.
func TestRejectedCommandInBatch(t *testing.T) {
	f := mustNew(t)
	mustApply1(t, f, cmdPutNamespace("n", 0))
	res := applyCmds(t, f,
		cmdPut("n", "o", "a", "1"),
		cmdPut("n", "o", "b", "2", "b", "3"), // duplicate key
		cmdPut("n", "o", "c", "3"),
	)
	if res[0].Err != nil || res[2].Err != nil {
		t.Fatalf("good commands failed: %v, %v", res[0].Err, res[2].Err)
	}
	if !errors.Is(res[1].Err, ErrInvalidArgument) || res[1].Result != nil {
		t.Fatalf("bad command: %+v, want ErrInvalidArgument and no result", res[1])
	}
	if got := keysOf(mustListAll(t, f, "n", "o")); !equalStrings(got, []string{"a", "c"}) {
		t.Fatalf("keys = %q, want a and c", got)
	}
	if info := mustObject(t, f, "n", "o"); info.CreateRevision != 2 || info.Revision != 4 {
		t.Fatalf("object = %+v, want created at 2, revision 4", info)
	}
	if f.Applies() != 4 {
		t.Fatalf("Applies = %d, want 4 (rejected commands count as applied)", f.Applies())
	}
}

func TestQuota(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("q", 20), cmdPutNamespace("free", 0))

	// Exactly the quota is allowed: 2 keys of 1 byte, values of 9.
	mustApply1(t, f, cmdPut("q", "o", "a", "123456789", "b", "123456789"))
	if got := mustObject(t, f, "q", "o").Bytes; got != 20 {
		t.Fatalf("object bytes = %d, want 20", got)
	}
	tests := []struct {
		name string
		cmd  *raftcmdv1.Command
	}{
		{"one more key", cmdPut("q", "o", "c", "")},
		{"a longer value", cmdPut("q", "o", "a", "1234567890")},
		{"delete one, put more back", cmdBatch("q", "o", []*raftcmdv1.KeyPut{kput("c", "12345678901")}, "a")},
		{"a new object over quota", cmdPut("q", "new", "k", strings.Repeat("v", 20))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mustReject(t, f, tt.cmd, ErrQuotaExceeded)
			if !strings.Contains(err.Error(), "max_object_bytes") {
				t.Fatalf("quota error %q does not name the setting", err)
			}
		})
	}
	if _, err := f.Object("q", "new"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("rejected write created an object: %v", err)
	}

	// The quota is per object.
	mustApply1(t, f, cmdPut("q", "other", "k", strings.Repeat("v", 19)))
	// Without a quota anything goes.
	mustApply1(t, f, cmdPut("free", "o", "k", strings.Repeat("v", 1<<16)))
	// A net-neutral exchange at the limit is allowed.
	mustApply1(t, f, cmdBatch("q", "o", []*raftcmdv1.KeyPut{kput("c", "123456789")}, "a"))

	// Lowering the quota leaves the object over it: writes that grow it
	// are refused, writes that shrink it are allowed.
	mustApply1(t, f, cmdPutNamespace("q", 5))
	mustReject(t, f, cmdPut("q", "o", "d", ""), ErrQuotaExceeded)
	mustReject(t, f, cmdPut("q", "o", "b", "1234567890"), ErrQuotaExceeded)
	mustApply1(t, f, cmdPut("q", "o", "b", "1"))                                    // 20 -> 12: still over 5, but smaller
	mustApply1(t, f, cmdPut("q", "o", "b", "2"))                                    // same size
	mustApply1(t, f, cmdBatch("q", "o", []*raftcmdv1.KeyPut{kput("b", "12")}, "c")) // 12 -> 3
	if got := mustObject(t, f, "q", "o").Bytes; got != 3 {
		t.Fatalf("object bytes = %d, want 3", got)
	}
	mustApply1(t, f, cmdPut("q", "o", "b", "123"))  // 4, under quota again
	mustApply1(t, f, cmdPut("q", "o", "b", "1234")) // 5, at the quota
	mustReject(t, f, cmdPut("q", "o", "b", "12345"), ErrQuotaExceeded)

	// A large quota that still fits an int64 works.
	mustApply1(t, f, cmdPutNamespace("q", 1<<62))
	mustApply1(t, f, cmdPut("q", "o", "b", strings.Repeat("v", 100)))
	mustConsistent(t, f)
}

func TestDeleteObject(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f,
		cmdPutNamespace("n", 0),
		cmdPut("n", "o", "a", "1", "b", "2", "c", "3"),
		cmdPut("n", "o2", "a", "1"),
		cmdPut("n", "o/sub", "a", "1"),
	)
	shard := ShardOf("n", "o")
	statsBefore := mustShardStats(t, f)[shard]

	res := mustApply1(t, f, cmdDeleteObject("n", "o")).GetDeleteObject()
	if res == nil || !res.Existed || res.DeletedKeys != 3 {
		t.Fatalf("delete existing: %v, want existed, 3 keys", res)
	}
	if _, err := f.Object("n", "o"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("Object after delete = %v, want ErrObjectNotFound", err)
	}
	if kvs := mustListAll(t, f, "n", "o"); len(kvs) != 0 {
		t.Fatalf("keys after delete: %q", keysOf(kvs))
	}
	if got := mustNamespace(t, f, "n").ObjectCount; got != 2 {
		t.Fatalf("object_count = %d, want 2", got)
	}
	statsAfter := mustShardStats(t, f)[shard]
	if statsAfter.Objects != statsBefore.Objects-1 || statsAfter.Bytes != statsBefore.Bytes-6 {
		t.Fatalf("shard %d stats %+v -> %+v, want one object and 6 bytes fewer", shard, statsBefore, statsAfter)
	}
	for _, other := range []string{"o2", "o/sub"} {
		if kv := mustGet(t, f, "n", other, "a"); string(kv.Value) != "1" {
			t.Fatalf("neighbour %q lost its key", other)
		}
	}

	// Deleting it again (or any absent object) changes nothing.
	before := mustHash(t, f)
	res = mustApply1(t, f, cmdDeleteObject("n", "o")).GetDeleteObject()
	if res == nil || res.Existed || res.DeletedKeys != 0 {
		t.Fatalf("delete absent: %v, want not existed", res)
	}
	if !bytes.Equal(before, mustHash(t, f)) {
		t.Fatalf("deleting an absent object changed the state")
	}

	mustReject(t, f, cmdDeleteObject("missing", "o"), ErrNamespaceNotFound)
	mustReject(t, f, cmdDeleteObject("n", ""), ErrInvalidArgument)
	mustReject(t, f, cmdDeleteObject("n", strings.Repeat("x", MaxObjectNameBytes+1)), ErrInvalidArgument)
	mustReject(t, f, cmdDeleteObject("bad/ns", "o"), ErrInvalidArgument)

	// A new object under the old name starts afresh.
	mustApply1(t, f, cmdPut("n", "o", "z", "9"))
	idx := f.AppliedIndex()
	if info := mustObject(t, f, "n", "o"); info.CreateRevision != idx || info.Keys != 1 {
		t.Fatalf("recreated object = %+v, want created at %d with 1 key", info, idx)
	}
	if kv := mustGet(t, f, "n", "o", "z"); kv.CreateRevision != idx {
		t.Fatalf("recreated key create_revision %d, want %d", kv.CreateRevision, idx)
	}
	mustConsistent(t, f)
}

func TestObjectDisappearsWithLastKey(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("n", 0), cmdPut("n", "o", "a", "1", "b", "2"))
	shard := ShardOf("n", "o")

	mustApply1(t, f, cmdDel("n", "o", "a"))
	if info := mustObject(t, f, "n", "o"); info.Keys != 1 || info.Bytes != 2 || info.Revision != 3 {
		t.Fatalf("object after deleting one key = %+v", info)
	}

	res := mustApply1(t, f, cmdDel("n", "o", "b")).GetBatchWrite()
	if res.GetDeleted() != 1 {
		t.Fatalf("deleting the last key: %v", res)
	}
	if _, err := f.Object("n", "o"); !errors.Is(err, ErrObjectNotFound) {
		t.Fatalf("Object after its last key went = %v, want ErrObjectNotFound", err)
	}
	if objs, _ := mustObjects(t, f, "n", "", "", 10); len(objs) != 0 {
		t.Fatalf("Objects still lists %v", objs)
	}
	if got := mustNamespace(t, f, "n").ObjectCount; got != 0 {
		t.Fatalf("object_count = %d, want 0", got)
	}
	if s := mustShardStats(t, f)[shard]; s.Objects != 0 || s.Bytes != 0 {
		t.Fatalf("shard %d stats %+v, want empty", shard, s)
	}
	// The namespace is empty again: no force needed.
	if r := mustApply1(t, f, cmdDeleteNamespace("n", false)).GetNamespace(); r.DeletedObjects != 0 {
		t.Fatalf("delete of emptied namespace: %v", r)
	}
	mustConsistent(t, f)
}

func TestMembers(t *testing.T) {
	f := mustNew(t)
	if ms := mustMembers(t, f); len(ms) != 0 {
		t.Fatalf("members of a new FSM: %v", ms)
	}
	for _, r := range mustApply(t, f,
		cmdSetMember("n2", "10.0.0.2:7000", "10.0.0.2:7001", "10.0.0.2:7002"),
		cmdSetMember("n1", "10.0.0.1:7000", "10.0.0.1:7001", "10.0.0.1:7002"),
		cmdSetMember("n3", "10.0.0.3:7000", "", ""),
		cmdSetMember("n2", "10.0.0.22:7000", "10.0.0.22:7001", "10.0.0.22:7002"), // update
	) {
		if r.GetEmpty() == nil {
			t.Fatalf("SetMember result %v, want empty", r)
		}
	}
	want := []*raftcmdv1.Member{
		{Id: "n1", RaftAddr: "10.0.0.1:7000", GrpcAddr: "10.0.0.1:7001", HttpAddr: "10.0.0.1:7002"},
		{Id: "n2", RaftAddr: "10.0.0.22:7000", GrpcAddr: "10.0.0.22:7001", HttpAddr: "10.0.0.22:7002"},
		{Id: "n3", RaftAddr: "10.0.0.3:7000"},
	}
	mustEqualMembers(t, mustMembers(t, f), want)

	mustReject(t, f, cmdSetMember("", "a", "b", "c"), ErrInvalidArgument)
	mustReject(t, f, &raftcmdv1.Command{Op: &raftcmdv1.Command_SetMember{SetMember: &raftcmdv1.SetMember{}}}, ErrInvalidArgument)
	mustReject(t, f, cmdRemoveMember("n9"), ErrMemberNotFound)
	mustReject(t, f, cmdRemoveMember(""), ErrMemberNotFound)

	if r := mustApply1(t, f, cmdRemoveMember("n2")); r.GetEmpty() == nil {
		t.Fatalf("RemoveMember result %v, want empty", r)
	}
	mustEqualMembers(t, mustMembers(t, f), []*raftcmdv1.Member{want[0], want[2]})
	mustReject(t, f, cmdRemoveMember("n2"), ErrMemberNotFound)
}

func mustEqualMembers(t testing.TB, got, want []*raftcmdv1.Member) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("members = %v, want %v", got, want)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("member %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestApplySkipsAppliedEntries(t *testing.T) {
	f := mustNew(t)
	entries := entriesFor(t, f,
		cmdPutNamespace("n", 0),
		cmdPut("n", "o", "a", "1"),
		cmdPut("n", "o", "a", "2"),
		cmdPut("n", "o", "b", "3"),
	)
	mustApplyBatch(t, f, entries[:3])
	if f.AppliedIndex() != 3 || f.Applies() != 3 {
		t.Fatalf("applied %d, applies %d; want 3, 3", f.AppliedIndex(), f.Applies())
	}
	hash := mustHash(t, f)
	now := f.Now()

	// Raft hands entries 1..3 over again: nothing happens.
	for _, batch := range [][]Entry{entries[:3], entries[2:3], entries[:1]} {
		res := mustApplyBatch(t, f, batch)
		for i, r := range res {
			if r.Result != nil || r.Err != nil {
				t.Fatalf("skipped entry %d answered %+v", batch[i].Index, r)
			}
		}
		if f.AppliedIndex() != 3 || f.Applies() != 3 || f.Now() != now || !bytes.Equal(hash, mustHash(t, f)) {
			t.Fatalf("re-applying entries changed the FSM: applied %d applies %d", f.AppliedIndex(), f.Applies())
		}
	}
	if kv := mustGet(t, f, "n", "o", "a"); string(kv.Value) != "2" || kv.ModRevision != 3 {
		t.Fatalf("a = %+v", kv)
	}

	// A batch that overlaps the applied index applies only what is new.
	res := mustApplyBatch(t, f, entries[1:])
	if res[0].Result != nil || res[1].Result != nil || res[2].Result.GetRevision() != 4 {
		t.Fatalf("overlapping batch results: %+v", res)
	}
	if f.AppliedIndex() != 4 || f.Applies() != 4 {
		t.Fatalf("applied %d, applies %d; want 4, 4", f.AppliedIndex(), f.Applies())
	}
	if kv := mustGet(t, f, "n", "o", "a"); kv.ModRevision != 3 {
		t.Fatalf("a re-applied: %+v", kv)
	}

	// An empty batch is harmless.
	if res := mustApplyBatch(t, f, nil); len(res) != 0 || f.AppliedIndex() != 4 {
		t.Fatalf("empty batch: %v, applied %d", res, f.AppliedIndex())
	}
}

func TestReopenKeepsState(t *testing.T) {
	dir := t.TempDir()
	f := mustOpen(t, dir)
	mustApply(t, f,
		cmdPutNamespace("n", 10),
		cmdPut("n", "o", "a", "1", "b", "2"),
		cmdSetMember("m1", "r", "g", "h"),
	)
	mustApplyBatch(t, f, []Entry{{Index: 4}}) // a configuration entry
	wantState := dumpState(t, f)
	wantHash := mustHash(t, f)
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := f.Get("n", "o", "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if _, err := f.Hash(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Hash after Close = %v, want ErrClosed", err)
	}
	if _, err := f.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Snapshot after Close = %v, want ErrClosed", err)
	}
	mustPanic(t, func() { f.ApplyBatch([]Entry{{Index: 5}}) })

	g := mustOpen(t, dir)
	if g.AppliedIndex() != 4 || g.Applies() != 0 {
		t.Fatalf("reopened: applied %d applies %d, want 4 and 0", g.AppliedIndex(), g.Applies())
	}
	if got := dumpState(t, g); got != wantState {
		t.Fatalf("reopened state:\n%s\nwant\n%s", got, wantState)
	}
	if !bytes.Equal(wantHash, mustHash(t, g)) {
		t.Fatalf("reopened hash differs")
	}
	// The log is replayed from the start after a restart: nothing applies
	// twice.
	mustApply1(t, g, cmdPut("n", "o", "c", "3")) // index 5
	replay := entriesAt(t, 1,
		cmdPutNamespace("n", 10),
		cmdPut("n", "o", "a", "changed"),
	)
	mustApplyBatch(t, g, replay)
	if g.AppliedIndex() != 5 || g.Applies() != 1 {
		t.Fatalf("replay: applied %d applies %d, want 5 and 1", g.AppliedIndex(), g.Applies())
	}
	if kv := mustGet(t, g, "n", "o", "a"); string(kv.Value) != "1" {
		t.Fatalf("replayed entry applied twice: a = %q", kv.Value)
	}
}

func TestOpenOptions(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatalf("Open without Dir succeeded")
	}
	if _, err := Open(Options{Dir: t.TempDir(), InitialMmapSize: -1}); err == nil {
		t.Fatalf("Open with negative InitialMmapSize succeeded")
	}
	if err := (Options{Dir: "x"}).Validate(); err != nil {
		t.Fatalf("Validate of minimal options: %v", err)
	}
	// Dir is created when missing.
	f := mustOpen(t, t.TempDir()+"/a/b")
	if f.AppliedIndex() != 0 || f.Now() != 0 {
		t.Fatalf("new FSM: applied %d now %d", f.AppliedIndex(), f.Now())
	}
}

func TestNilDataEntryOnlyAdvancesIndex(t *testing.T) {
	f := mustNew(t)
	mustApply(t, f, cmdPutNamespace("n", 0), cmdPut("n", "o", "a", "1"))
	hash, now, applies := mustHash(t, f), f.Now(), f.Applies()

	res := mustApplyBatch(t, f, []Entry{{Index: 3}, {Index: 4, Data: nil}})
	for _, r := range res {
		if r.Result != nil || r.Err != nil {
			t.Fatalf("entry without data answered %+v", r)
		}
	}
	if f.AppliedIndex() != 4 || f.Applies() != applies || f.Now() != now || !bytes.Equal(hash, mustHash(t, f)) {
		t.Fatalf("entries without data: applied %d applies %d now %d (want 4, %d, %d), or hash changed",
			f.AppliedIndex(), f.Applies(), f.Now(), applies, now)
	}
	// The next command gets the next index as its revision.
	if r := mustApply1(t, f, cmdPut("n", "o", "b", "2")); r.Revision != 5 {
		t.Fatalf("revision %d, want 5", r.Revision)
	}
}

func TestLogTimeNeverRunsBackwards(t *testing.T) {
	f := mustNew(t)
	at := func(ms int64, cmd *raftcmdv1.Command) *raftcmdv1.Command {
		cmd.TimeUnixMs = ms
		return cmd
	}
	steps := []struct {
		ms   int64
		want int64
	}{{5000, 5000}, {3000, 5000}, {-1, 5000}, {5001, 5001}, {9000, 9000}}
	for i, s := range steps {
		mustApply1(t, f, at(s.ms, cmdSetMember("m", "r", "g", "h")))
		if got := f.Now(); got != s.want {
			t.Fatalf("step %d: Now = %d, want %d", i, got, s.want)
		}
	}
	// A rejected command still carries the leader's clock.
	applyCmds(t, f, at(10000, cmdRemoveMember("nobody")))
	if got := f.Now(); got != 10000 {
		t.Fatalf("Now after rejected command = %d, want 10000", got)
	}
	// Within one batch, the maximum wins too.
	applyCmds(t, f, at(20000, cmdSetMember("m", "r", "g", "h")), at(15000, cmdSetMember("m", "r", "g", "h")))
	if got := f.Now(); got != 20000 {
		t.Fatalf("Now after batch = %d, want 20000", got)
	}
}

// An entry this build cannot apply stops the node: ApplyBatch panics and
// commits nothing of its batch.
func TestApplyPanicsOnUnknownEntries(t *testing.T) {
	withUnknownField := func(t testing.TB) []byte {
		b := mustEncode(t, 3, cmdPut("n", "o", "x", "1"))
		return protowire.AppendVarint(protowire.AppendTag(b, 99, protowire.VarintType), 1)
	}
	tests := []struct {
		name string
		data func(t testing.TB) []byte
	}{
		{"undecodable", func(testing.TB) []byte { return []byte{0xff, 0xff, 0xff} }},
		{"truncated", func(t testing.TB) []byte { b := mustEncode(t, 3, cmdPut("n", "o", "x", "1")); return b[:len(b)-1] }},
		{"op unset", func(t testing.TB) []byte { return mustEncode(t, 3, &raftcmdv1.Command{}) }},
		{"empty data", func(testing.TB) []byte { return []byte{} }},
		{"version 0", func(t testing.TB) []byte {
			b, _ := proto.Marshal(&raftcmdv1.Command{Op: cmdRemoveMember("x").Op})
			return b
		}},
		{"version 2", func(t testing.TB) []byte {
			return mustEncode(t, 3, &raftcmdv1.Command{Version: CommandVersion + 1, Op: cmdRemoveMember("x").Op})
		}},
		{"unknown command field", withUnknownField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustNew(t)
			mustApply(t, f, cmdPutNamespace("n", 0), cmdPut("n", "o", "a", "1"))
			hash, now, applies := mustHash(t, f), f.Now(), f.Applies()
			good := mustEncode(t, 3, cmdPut("n", "o", "b", "2"))
			bad := tt.data(t)
			// The bad entry both after and before a good one in its batch.
			for _, order := range [][2][]byte{{good, bad}, {bad, good}} {
				batch := []Entry{{Index: 3, Data: order[0]}, {Index: 4, Data: order[1]}}
				v := mustPanic(t, func() { f.ApplyBatch(batch) })
				if s, _ := v.(string); !strings.HasPrefix(s, "fsm: entry ") {
					t.Fatalf("panic value %v, want a message naming the entry", v)
				}
				if f.AppliedIndex() != 2 || f.Applies() != applies || f.Now() != now || !bytes.Equal(hash, mustHash(t, f)) {
					t.Fatalf("a batch that panicked left changes behind (applied %d)", f.AppliedIndex())
				}
				if _, err := f.Get("n", "o", "b"); !errors.Is(err, ErrKeyNotFound) {
					t.Fatalf("good entry of a panicked batch was committed: %v", err)
				}
			}
		})
	}
}
