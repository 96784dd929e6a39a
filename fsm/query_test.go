package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand"
	"sort"
	"strings"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
)

// queryKeys are the keys of object n/a in the query tests: slashes,
// spaces, non-ASCII and the highest code points, so that byte order and
// prefix bounds are exercised where UTF-8 gets interesting.
var queryKeys = []string{
	"a", "a b", "a/", "a/b", "a/b/c", "a/c", "a0", "b", "ba", "c",
	"k\x00", "z", "~", "\u007f", "é", "ÿ", "ÿ/x", "日本", "日本語",
	"\uffff", "\U0010FFFF", "\U0010FFFF\U0010FFFF",
}

// mustQueryFSM returns an FSM holding
//
//	n/a:   queryKeys, each with value "v:"+key
//	n/ab:  "a", "x"        (its name extends "a")
//	n/b:   "a"
//	n2/a:  "a", "zz"       (its namespace extends "n")
//	empty: no objects
func mustQueryFSM(t testing.TB) *FSM {
	t.Helper()
	f := mustNew(t)
	var kv []string
	for _, k := range queryKeys {
		kv = append(kv, k, "v:"+k)
	}
	mustApply(t, f,
		cmdPutNamespace("n", 0),
		cmdPutNamespace("n2", 0),
		cmdPutNamespace("empty", 0),
		cmdPut("n", "a", kv...),
		cmdPut("n", "ab", "a", "ab-a", "x", "ab-x"),
		cmdPut("n", "b", "a", "b-a"),
		cmdPut("n2", "a", "a", "n2-a", "zz", "n2-zz"),
	)
	return f
}

func sortedQueryKeys() []string {
	keys := append([]string(nil), queryKeys...)
	sort.Strings(keys) // byte order, as the store orders keys
	return keys
}

func TestGet(t *testing.T) {
	f := mustQueryFSM(t)
	for _, k := range queryKeys {
		kv := mustGet(t, f, "n", "a", k)
		if kv.Key != k || string(kv.Value) != "v:"+k || kv.Encoding != raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY || kv.CreateRevision != 4 || kv.ModRevision != 4 {
			t.Fatalf("Get(%q) = %+v", k, kv)
		}
	}
	// The returned value is the caller's.
	kv := mustGet(t, f, "n", "a", "a")
	kv.Value[0] = 'X'
	if again := mustGet(t, f, "n", "a", "a"); string(again.Value) != "v:a" {
		t.Fatalf("changing a returned value changed the store: %q", again.Value)
	}

	tests := []struct {
		ns, obj, key string
		want         error
	}{
		{"n", "a", "missing", ErrKeyNotFound},
		{"n", "a", "", ErrKeyNotFound},
		{"n", "a", "a/b/", ErrKeyNotFound},
		{"n", "ab", "b", ErrKeyNotFound}, // a key of n/a, not of n/ab
		{"n", "a", "x", ErrKeyNotFound},  // a key of n/ab, not of n/a
		{"n2", "a", "b", ErrKeyNotFound}, // a key of n/a, not of n2/a
		{"n", "nobody", "a", ErrKeyNotFound},
		{"missing", "a", "a", ErrNamespaceNotFound},
		{"", "a", "a", ErrNamespaceNotFound},
	}
	for _, tt := range tests {
		if _, err := f.Get(tt.ns, tt.obj, tt.key); !errors.Is(err, tt.want) {
			t.Errorf("Get(%q, %q, %q) = %v, want %v", tt.ns, tt.obj, tt.key, err, tt.want)
		}
	}
	if kv := mustGet(t, f, "n", "ab", "x"); string(kv.Value) != "ab-x" {
		t.Fatalf("n/ab/x = %q", kv.Value)
	}
	if kv := mustGet(t, f, "n2", "a", "zz"); string(kv.Value) != "n2-zz" {
		t.Fatalf("n2/a/zz = %q", kv.Value)
	}
}

func TestBatchGet(t *testing.T) {
	f := mustQueryFSM(t)
	tests := []struct {
		obj  string
		keys []string
		want []string
	}{
		{"a", []string{"c", "missing", "a", "日本", "b"}, []string{"c", "a", "日本", "b"}},
		{"a", []string{"\U0010FFFF", "a"}, []string{"\U0010FFFF", "a"}},
		{"a", []string{"x"}, nil},
		{"a", nil, nil},
		{"ab", []string{"x", "b", "a"}, []string{"x", "a"}},
		{"nobody", []string{"a"}, nil},
	}
	for _, tt := range tests {
		kvs, err := f.BatchGet("n", tt.obj, tt.keys)
		if err != nil {
			t.Fatalf("BatchGet(n, %q, %q): %v", tt.obj, tt.keys, err)
		}
		if got := keysOf(kvs); !equalStrings(got, tt.want) {
			t.Fatalf("BatchGet(n, %q, %q) = %q, want %q", tt.obj, tt.keys, got, tt.want)
		}
		for _, kv := range kvs {
			if want := mustGet(t, f, "n", tt.obj, kv.Key); !bytes.Equal(kv.Value, want.Value) || kv.ModRevision != want.ModRevision {
				t.Fatalf("BatchGet value of %q = %q, Get says %q", kv.Key, kv.Value, want.Value)
			}
		}
	}
	if _, err := f.BatchGet("missing", "a", []string{"a"}); !errors.Is(err, ErrNamespaceNotFound) {
		t.Fatalf("BatchGet in a missing namespace = %v", err)
	}
}

// refList is what List must answer for keys (those of one object, any
// order, values "v:"+key).
func refList(keys []string, r Range) ([]string, bool) {
	var in []string
	for _, k := range keys {
		if k < r.Lo || k == r.Lo && r.LoExclusive || r.Hi != "" && k >= r.Hi {
			continue
		}
		in = append(in, k)
	}
	sort.Strings(in)
	if r.Reverse {
		for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
			in[i], in[j] = in[j], in[i]
		}
	}
	var out []string
	size := 0
	for _, k := range in {
		if len(out) == r.Limit {
			return out, true
		}
		n := len(k)
		if !r.KeysOnly {
			n += len("v:" + k)
		}
		if len(out) > 0 && r.MaxBytes > 0 && size+n > r.MaxBytes {
			return out, true // a page never passes MaxBytes, unless its first key does
		}
		size += n
		out = append(out, k)
	}
	return out, false
}

func TestList(t *testing.T) {
	f := mustQueryFSM(t)
	all := sortedQueryKeys()
	reversed := append([]string(nil), all...)
	sort.Sort(sort.Reverse(sort.StringSlice(reversed)))
	const many = 1000
	tests := []struct {
		name     string
		r        Range
		want     []string
		wantMore bool
	}{
		{"everything", Range{Limit: many}, all, false},
		{"everything reversed", Range{Reverse: true, Limit: many}, reversed, false},
		{"prefix a/", Range{Lo: "a/", Hi: PrefixEnd("a/"), Limit: many}, []string{"a/", "a/b", "a/b/c", "a/c"}, false},
		{"prefix a/ reversed", Range{Lo: "a/", Hi: PrefixEnd("a/"), Reverse: true, Limit: many}, []string{"a/c", "a/b/c", "a/b", "a/"}, false},
		{"prefix a/b", Range{Lo: "a/b", Hi: PrefixEnd("a/b"), Limit: many}, []string{"a/b", "a/b/c"}, false},
		{"prefix a", Range{Lo: "a", Hi: PrefixEnd("a"), Limit: many}, []string{"a", "a b", "a/", "a/b", "a/b/c", "a/c", "a0"}, false},
		{"prefix 日本", Range{Lo: "日本", Hi: PrefixEnd("日本"), Limit: many}, []string{"日本", "日本語"}, false},
		{"prefix ÿ", Range{Lo: "ÿ", Hi: PrefixEnd("ÿ"), Limit: many}, []string{"ÿ", "ÿ/x"}, false},
		{"prefix max rune", Range{Lo: "\U0010FFFF", Hi: PrefixEnd("\U0010FFFF"), Limit: many}, []string{"\U0010FFFF", "\U0010FFFF\U0010FFFF"}, false},
		{"prefix max rune reversed", Range{Lo: "\U0010FFFF", Hi: PrefixEnd("\U0010FFFF"), Reverse: true, Limit: many}, []string{"\U0010FFFF\U0010FFFF", "\U0010FFFF"}, false},
		{"prefix k", Range{Lo: "k", Hi: PrefixEnd("k"), Limit: many}, []string{"k\x00"}, false},
		{"prefix nothing", Range{Lo: "q", Hi: PrefixEnd("q"), Limit: many}, nil, false},
		{"lo inclusive", Range{Lo: "b", Hi: "c", Limit: many}, []string{"b", "ba"}, false},
		{"lo exclusive", Range{Lo: "b", LoExclusive: true, Hi: "c", Limit: many}, []string{"ba"}, false},
		{"lo exclusive absent", Range{Lo: "bb", LoExclusive: true, Limit: 2}, []string{"c", "k\x00"}, true},
		{"hi exclusive", Range{Lo: "a0", Hi: "ba", Limit: many}, []string{"a0", "b"}, false},
		{"hi absent key", Range{Lo: "a0", Hi: "bb", Limit: many}, []string{"a0", "b", "ba"}, false},
		{"hi below lo", Range{Lo: "c", Hi: "b", Limit: many}, nil, false},
		{"hi equals lo", Range{Lo: "c", Hi: "c", Limit: many}, nil, false},
		{"reverse with hi", Range{Hi: "b", Reverse: true, Limit: 3}, []string{"a0", "a/c", "a/b/c"}, true},
		{"reverse with hi at a key", Range{Lo: "a/", Hi: "a0", Reverse: true, Limit: many}, []string{"a/c", "a/b/c", "a/b", "a/"}, false},
		{"reverse lo exclusive", Range{Lo: "a/", LoExclusive: true, Hi: "a0", Reverse: true, Limit: many}, []string{"a/c", "a/b/c", "a/b"}, false},
		{"reverse without hi", Range{Lo: "日本", Reverse: true, Limit: 2}, []string{"\U0010FFFF\U0010FFFF", "\U0010FFFF"}, true},
		{"reverse hi past everything", Range{Hi: "\U0010FFFF\U0010FFFF\U0010FFFF", Reverse: true, Limit: 1}, []string{"\U0010FFFF\U0010FFFF"}, true},
		{"limit", Range{Limit: 3}, all[:3], true},
		{"limit exactly all", Range{Limit: len(all)}, all, false},
		{"limit exactly the range", Range{Lo: "a/", Hi: PrefixEnd("a/"), Limit: 4}, []string{"a/", "a/b", "a/b/c", "a/c"}, false},
		{"limit one short of the range", Range{Lo: "a/", Hi: PrefixEnd("a/"), Limit: 3}, []string{"a/", "a/b", "a/b/c"}, true},
		{"max bytes", Range{MaxBytes: 1, Limit: many}, all[:1], true},
		// "a" is 1+3 bytes, "a b" 3+5: 12 are reached after two keys.
		{"max bytes reached exactly", Range{MaxBytes: 12, Limit: many}, all[:2], true},
		{"max bytes keys only", Range{MaxBytes: 4, KeysOnly: true, Limit: many}, all[:2], true},
		{"max bytes larger than all", Range{MaxBytes: 1 << 20, Limit: many}, all, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kvs, more := mustList(t, f, "n", "a", tt.r)
			if got := keysOf(kvs); !equalStrings(got, tt.want) || more != tt.wantMore {
				t.Fatalf("List(%+v) = %q more=%v, want %q more=%v", tt.r, got, more, tt.want, tt.wantMore)
			}
			refKeys, refMore := refList(queryKeys, tt.r)
			if !equalStrings(refKeys, tt.want) || refMore != tt.wantMore {
				t.Fatalf("test table disagrees with the reference: %q more=%v", refKeys, refMore)
			}
			for _, kv := range kvs {
				if tt.r.KeysOnly && kv.Value != nil {
					t.Fatalf("KeysOnly returned value %q for %q", kv.Value, kv.Key)
				}
				if !tt.r.KeysOnly && string(kv.Value) != "v:"+kv.Key {
					t.Fatalf("value of %q = %q", kv.Key, kv.Value)
				}
				if kv.CreateRevision != 4 || kv.ModRevision != 4 || kv.Encoding != raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY {
					t.Fatalf("key %+v: wrong revisions or encoding", kv)
				}
			}
		})
	}

	for _, limit := range []int{0, -1} {
		if _, _, err := f.List("n", "a", Range{Limit: limit}); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("List with limit %d = %v, want ErrInvalidArgument", limit, err)
		}
	}
	if _, _, err := f.List("missing", "a", Range{Limit: 1}); !errors.Is(err, ErrNamespaceNotFound) {
		t.Fatalf("List in a missing namespace = %v", err)
	}
	if kvs, more := mustList(t, f, "n", "nobody", Range{Limit: 10}); len(kvs) != 0 || more {
		t.Fatalf("List of a missing object = %q more=%v", keysOf(kvs), more)
	}
	if kvs, more := mustList(t, f, "empty", "a", Range{Reverse: true, Limit: 10}); len(kvs) != 0 || more {
		t.Fatalf("List in an empty namespace = %q more=%v", keysOf(kvs), more)
	}
}

// TestListMatchesReference compares List with refList over random ranges,
// bounds drawn from the keys, their neighbours and their prefixes.
func TestListMatchesReference(t *testing.T) {
	f := mustQueryFSM(t)
	var bounds []string
	for _, k := range queryKeys {
		bounds = append(bounds, k, k+"\x00", PrefixEnd(k))
		if len(k) > 1 {
			bounds = append(bounds, k[:len(k)-1])
		}
	}
	bounds = append(bounds, "", "\xff", "\xff\xff", "0", "m")
	rng := rand.New(rand.NewSource(1))
	pick := func() string { return bounds[rng.Intn(len(bounds))] }
	for i := 0; i < 2000; i++ {
		r := Range{
			Lo:          pick(),
			LoExclusive: rng.Intn(2) == 0,
			Reverse:     rng.Intn(2) == 0,
			Limit:       1 + rng.Intn(len(queryKeys)+2),
			KeysOnly:    rng.Intn(4) == 0,
		}
		if rng.Intn(4) != 0 {
			r.Hi = pick()
		}
		if rng.Intn(3) == 0 {
			r.MaxBytes = 1 + rng.Intn(60)
		}
		kvs, more := mustList(t, f, "n", "a", r)
		want, wantMore := refList(queryKeys, r)
		if got := keysOf(kvs); !equalStrings(got, want) || more != wantMore {
			t.Fatalf("List(%+v) = %q more=%v, want %q more=%v", r, got, more, want, wantMore)
		}
	}
}

// Pages that continue after the last key returned walk a range exactly
// once, in both directions.
func TestListPagination(t *testing.T) {
	f := mustQueryFSM(t)
	for _, reverse := range []bool{false, true} {
		for _, limit := range []int{1, 2, 5, 100} {
			var got []string
			r := Range{Reverse: reverse, Limit: limit, MaxBytes: 20}
			for pages := 0; ; pages++ {
				if pages > len(queryKeys) {
					t.Fatalf("pagination does not end")
				}
				kvs, more := mustList(t, f, "n", "a", r)
				got = append(got, keysOf(kvs)...)
				if !more {
					break
				}
				last := kvs[len(kvs)-1].Key
				if reverse {
					r.Hi = last
				} else {
					r.Lo, r.LoExclusive = last, true
				}
			}
			want, _ := refList(queryKeys, Range{Reverse: reverse, Limit: len(queryKeys)})
			if !equalStrings(got, want) {
				t.Fatalf("reverse=%v limit=%d: pages walked %q, want %q", reverse, limit, got, want)
			}
		}
	}
}

// Keys of one object never show in another's listing, even when object or
// namespace names are prefixes of one another.
func TestListIsolation(t *testing.T) {
	f := mustQueryFSM(t)
	tests := []struct {
		ns, obj string
		want    []string
	}{
		{"n", "a", sortedQueryKeys()},
		{"n", "ab", []string{"a", "x"}},
		{"n", "b", []string{"a"}},
		{"n2", "a", []string{"a", "zz"}},
		{"n", "", nil},
		{"n", "a\x00", nil},
		{"n2", "ab", nil},
	}
	for _, tt := range tests {
		for _, reverse := range []bool{false, true} {
			kvs, more := mustList(t, f, tt.ns, tt.obj, Range{Reverse: reverse, Limit: 1000})
			want := append([]string(nil), tt.want...)
			if reverse {
				sort.Sort(sort.Reverse(sort.StringSlice(want)))
			}
			if got := keysOf(kvs); !equalStrings(got, want) || more {
				t.Fatalf("List(%q, %q, reverse=%v) = %q more=%v, want %q", tt.ns, tt.obj, reverse, got, more, want)
			}
			// With bounds reaching past the object's keys as well.
			kvs, _ = mustList(t, f, tt.ns, tt.obj, Range{Lo: "", Hi: "\xff\xff\xff", Reverse: reverse, Limit: 1000})
			if got := keysOf(kvs); !equalStrings(got, want) {
				t.Fatalf("List(%q, %q, reverse=%v, wide bounds) = %q, want %q", tt.ns, tt.obj, reverse, got, want)
			}
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a", "b"},
		{"a/", "a0"},
		{"az", "a{"},
		{"a\xff", "b"},
		{"a\xff\xff", "b"},
		{"\xff", ""},
		{"\xff\xff", ""},
		{"日本", "日\u672d"},
		{"\U0010FFFF", "\xf4\x8f\xbf\xc0"},
	}
	for _, tt := range tests {
		if got := PrefixEnd(tt.in); got != tt.want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestObject(t *testing.T) {
	f := mustQueryFSM(t)
	var size uint64
	for _, k := range queryKeys {
		size += uint64(len(k) + len("v:"+k))
	}
	want := ObjectInfo{Name: "a", Revision: 4, CreateRevision: 4, Keys: uint64(len(queryKeys)), Bytes: size, Shard: ShardOf("n", "a")}
	if got := mustObject(t, f, "n", "a"); got != want {
		t.Fatalf("Object(n, a) = %+v, want %+v", got, want)
	}
	want = ObjectInfo{Name: "a", Revision: 7, CreateRevision: 7, Keys: 2, Bytes: 1 + 4 + 2 + 5, Shard: ShardOf("n2", "a")}
	if got := mustObject(t, f, "n2", "a"); got != want {
		t.Fatalf("Object(n2, a) = %+v, want %+v", got, want)
	}
	for _, tt := range []struct {
		ns, obj string
		want    error
	}{
		{"n", "nobody", ErrObjectNotFound},
		{"n", "", ErrObjectNotFound},
		{"n2", "ab", ErrObjectNotFound},
		{"empty", "a", ErrObjectNotFound},
		{"missing", "a", ErrNamespaceNotFound},
	} {
		if _, err := f.Object(tt.ns, tt.obj); !errors.Is(err, tt.want) {
			t.Errorf("Object(%q, %q) = %v, want %v", tt.ns, tt.obj, err, tt.want)
		}
	}
}

func TestObjects(t *testing.T) {
	f := mustNew(t)
	cmds := []*raftcmdv1.Command{cmdPutNamespace("o", 0), cmdPutNamespace("o2", 0), cmdPutNamespace("empty", 0)}
	var all []string
	for i := 0; i < 25; i++ {
		all = append(all, fmt.Sprintf("obj-%02d", i))
	}
	all = append(all, "obj", "obj-1/x", "other", "é", "a b")
	for _, name := range all {
		cmds = append(cmds, cmdPut("o", name, "k", name))
	}
	cmds = append(cmds, cmdPut("o2", "obj-05", "k", "v"), cmdPut("o2", "aaa", "k", "v"), cmdPut("o2", "zzz", "k", "v"))
	mustApply(t, f, cmds...)
	sort.Strings(all)

	withPrefix := func(p string) []string {
		var out []string
		for _, n := range all {
			if strings.HasPrefix(n, p) {
				out = append(out, n)
			}
		}
		return out
	}
	tests := []struct {
		prefix, after string
		limit         int
		want          []string
		wantMore      bool
	}{
		{"", "", 1000, all, false},
		{"", "", 3, all[:3], true},
		{"", "", len(all), all, false},
		{"obj-1", "", 1000, withPrefix("obj-1"), false},
		// '/' sorts before '0': "obj-1/x" comes first.
		{"obj-1", "", 3, []string{"obj-1/x", "obj-10", "obj-11"}, true},
		{"obj-1", "obj-15", 1000, []string{"obj-16", "obj-17", "obj-18", "obj-19"}, false},
		{"obj-1", "obj-14x", 2, []string{"obj-15", "obj-16"}, true},
		{"obj-1", "obj-0", 1, []string{"obj-1/x"}, true}, // after sorts before the prefix
		{"obj-1", "obj-2", 1000, nil, false},             // after sorts past the prefix
		{"obj-1", "obj-19", 1000, nil, false},            // after is the last one
		{"obj-1", "obj-1/x", 2, []string{"obj-10", "obj-11"}, true},
		{"obj-1", "obj-1", 2, []string{"obj-1/x", "obj-10"}, true}, // after is the prefix, no such object
		{"obj", "obj", 2, []string{"obj-00", "obj-01"}, true},      // after is the prefix and an object
		{"obj", "", 2, []string{"obj", "obj-00"}, true},
		{"", "obj", 2, []string{"obj-00", "obj-01"}, true},
		{"", "é", 10, nil, false},
		{"", "a", 1, []string{"a b"}, true},
		{"nothing", "", 10, nil, false},
		{"é", "", 10, []string{"é"}, false},
	}
	for _, tt := range tests {
		infos, more := mustObjects(t, f, "o", tt.prefix, tt.after, tt.limit)
		if got := namesOf(infos); !equalStrings(got, tt.want) || more != tt.wantMore {
			t.Errorf("Objects(o, %q, %q, %d) = %q more=%v, want %q more=%v", tt.prefix, tt.after, tt.limit, got, more, tt.want, tt.wantMore)
		}
		for _, info := range infos {
			if want := mustObject(t, f, "o", info.Name); info != want {
				t.Errorf("Objects says %+v, Object says %+v", info, want)
			}
		}
	}

	// Pagination walks every object exactly once, whatever the page size.
	for _, prefix := range []string{"", "obj-", "obj-2"} {
		for _, limit := range []int{1, 2, 7, 29, 30, 31} {
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(all)+1 {
					t.Fatalf("pagination does not end")
				}
				infos, more := mustObjects(t, f, "o", prefix, after, limit)
				got = append(got, namesOf(infos)...)
				if !more {
					break
				}
				after = infos[len(infos)-1].Name
			}
			if want := withPrefix(prefix); !equalStrings(got, want) {
				t.Fatalf("prefix %q limit %d: pages walked %q, want %q", prefix, limit, got, want)
			}
		}
	}

	// Namespace "o2" (whose name extends "o") keeps its own objects.
	infos, _ := mustObjects(t, f, "o2", "", "", 100)
	if got := namesOf(infos); !equalStrings(got, []string{"aaa", "obj-05", "zzz"}) {
		t.Fatalf("Objects(o2) = %q", got)
	}
	if infos, more := mustObjects(t, f, "empty", "", "", 10); len(infos) != 0 || more {
		t.Fatalf("Objects(empty) = %v more=%v", infos, more)
	}
	if _, _, err := f.Objects("missing", "", "", 10); !errors.Is(err, ErrNamespaceNotFound) {
		t.Fatalf("Objects(missing) = %v", err)
	}
	for _, limit := range []int{0, -5} {
		if _, _, err := f.Objects("o", "", "", limit); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("Objects with limit %d = %v, want ErrInvalidArgument", limit, err)
		}
	}
}

func TestShardStats(t *testing.T) {
	f := mustNew(t)
	for _, s := range mustShardStats(t, f) {
		if s.Objects != 0 || s.Bytes != 0 {
			t.Fatalf("new FSM has shard stats %+v", s)
		}
	}
	cmds := []*raftcmdv1.Command{cmdPutNamespace("s", 0), cmdPutNamespace("t", 0)}
	for i := 0; i < 300; i++ {
		ns := []string{"s", "t"}[i%2]
		cmds = append(cmds, cmdPut(ns, fmt.Sprintf("obj-%d", i), "k", strings.Repeat("v", i%7)))
	}
	mustApply(t, f, cmds...)
	mustApply(t, f, cmdDeleteObject("s", "obj-0"), cmdDel("t", "obj-1", "k"), cmdPut("s", "obj-2", "k2", "vv"))
	mustConsistent(t, f) // per shard: object counts and byte sums match the objects

	var objects, size uint64
	used := 0
	for i, s := range mustShardStats(t, f) {
		if int(s.Shard) != i {
			t.Fatalf("ShardStats()[%d].Shard = %d", i, s.Shard)
		}
		objects += s.Objects
		size += s.Bytes
		if s.Objects > 0 {
			used++
		}
	}
	var wantSize uint64
	for i := 2; i < 300; i++ {
		wantSize += uint64(1 + i%7)
	}
	wantSize += 4 // obj-2's second key
	if objects != 298 || size != wantSize {
		t.Fatalf("shard stats add up to %d objects %d bytes, want 298 and %d", objects, size, wantSize)
	}
	if used < 100 {
		t.Fatalf("298 objects landed in only %d shards", used)
	}
}

// ShardOf is part of the on-disk format: these values must never change.
func TestShardOfIsStable(t *testing.T) {
	golden := []struct {
		ns, name string
		shard    uint8
	}{
		{"", "", 31},
		{"n", "o", 164},
		{"chat-rooms", "room-1", 255},
		{"chat-rooms", "room-2", 146},
		{"users", "alice", 83},
		{"a", "bc", 163},
		{"ab", "c", 39},
		{"ns", "日本語", 2},
		{"ns", "a/b c", 137},
	}
	for _, g := range golden {
		if got := ShardOf(g.ns, g.name); got != g.shard {
			t.Errorf("ShardOf(%q, %q) = %d, want %d", g.ns, g.name, got, g.shard)
		}
	}
	// It is FNV-1a over ns, a zero byte and name.
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 500; i++ {
		ns := fmt.Sprintf("ns-%d", rng.Intn(50))
		name := fmt.Sprintf("obj/%d/é", rng.Int63())
		h := fnv.New32a()
		h.Write([]byte(ns))
		h.Write([]byte{0})
		h.Write([]byte(name))
		if got, want := ShardOf(ns, name), uint8(h.Sum32()%NumShards); got != want {
			t.Fatalf("ShardOf(%q, %q) = %d, FNV-1a says %d", ns, name, got, want)
		}
	}
}

func TestNamespaces(t *testing.T) {
	f := mustQueryFSM(t)
	nss := mustNamespaces(t, f)
	want := []struct {
		name    string
		objects uint64
		create  uint64
	}{{"empty", 0, 3}, {"n", 3, 1}, {"n2", 1, 2}}
	if len(nss) != len(want) {
		t.Fatalf("Namespaces = %v", nss)
	}
	for i, w := range want {
		if nss[i].Name != w.name || nss[i].ObjectCount != w.objects || nss[i].CreateRevision != w.create || nss[i].ModRevision != w.create {
			t.Fatalf("Namespaces()[%d] = %v, want %+v", i, nss[i], w)
		}
	}
	if f := mustNew(t); len(mustNamespaces(t, f)) != 0 {
		t.Fatalf("a new FSM has namespaces")
	}
}

func TestMembersQueryOrder(t *testing.T) {
	f := mustNew(t)
	ids := []string{"node-b", "node-a", "node-10", "node-9", "Z"}
	for _, id := range ids {
		mustApply1(t, f, cmdSetMember(id, id+":1", id+":2", id+":3"))
	}
	ms := mustMembers(t, f)
	var got []string
	for _, m := range ms {
		got = append(got, m.Id)
		if m.RaftAddr != m.Id+":1" || m.GrpcAddr != m.Id+":2" || m.HttpAddr != m.Id+":3" {
			t.Fatalf("member %v", m)
		}
	}
	if want := []string{"Z", "node-10", "node-9", "node-a", "node-b"}; !equalStrings(got, want) {
		t.Fatalf("Members in order %q, want %q", got, want)
	}
}
