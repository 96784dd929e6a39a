package server

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestAPI exercises every RPC of NamespaceService and ObjectService over
// gRPC, and the REST gateway, against one 3-node cluster. Requests go to
// followers as well as to the leader, so forwarding is always on the path.
// Each subtest uses namespaces of its own.
func TestAPI(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *testCluster)
	}{
		{"Namespaces", testNamespaces},
		{"Keys", testKeys},
		{"JSONValues", testJSONValues},
		{"BinaryValues", testBinaryValues},
		{"BatchGet", testBatchGet},
		{"BatchWrite", testBatchWrite},
		{"ListKeysBounds", testListKeysBounds},
		{"ListKeysPaging", testListKeysPaging},
		{"ListKeysLargeValues", testListKeysLargeValues},
		{"ListObjects", testListObjects},
		{"ObjectInfoAndDelete", testObjectInfoAndDelete},
		{"Limits", testLimits},
		{"RESTKeysAndNames", testRESTKeysAndNames},
		{"RESTServices", testRESTServices},
		{"RESTErrors", testRESTErrors},
		{"Probes", testProbes},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, c) })
	}
}

// some returns a follower and the leader of c: a request to the first is
// forwarded, to the second served in place.
func some(t *testing.T, c *testCluster) (follower, leader *testNode) {
	t.Helper()
	return c.followers(t)[0], c.leader(t)
}

func testNamespaces(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	ctx := testCtx(t)
	put, err := f.namespaces().PutNamespace(ctx, &cairnv1.PutNamespaceRequest{Namespace: "ns-b"})
	if err != nil {
		t.Fatal(err)
	}
	if !put.Created || put.Namespace.GetName() != "ns-b" || put.Namespace.CreateRevision != put.Header.GetRevision() ||
		put.Namespace.ModRevision != put.Header.GetRevision() || put.Namespace.GetSettings().GetMaxObjectBytes() != 0 {
		t.Fatalf("PutNamespace(ns-b) = %v", put)
	}
	mustPutNamespace(t, l, "ns-a")

	// Putting again replaces the settings and keeps the create revision.
	again, err := l.namespaces().PutNamespace(ctx, &cairnv1.PutNamespaceRequest{
		Namespace: "ns-b", Settings: &cairnv1.NamespaceSettings{MaxObjectBytes: 4096}})
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.Namespace.CreateRevision != put.Namespace.CreateRevision ||
		again.Namespace.ModRevision <= put.Namespace.ModRevision || again.Namespace.Settings.GetMaxObjectBytes() != 4096 {
		t.Fatalf("second PutNamespace(ns-b) = %v", again)
	}
	got, err := f.namespaces().GetNamespace(ctx, &cairnv1.GetNamespaceRequest{Namespace: "ns-b"})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.Namespace, again.Namespace) || got.Header.GetConsistency() != Linearizable {
		t.Fatalf("GetNamespace(ns-b) = %v, want %v", got, again.Namespace)
	}

	// A serializable read answers from the node's state and says so.
	ser, err := f.namespaces().ListNamespaces(ctx, &cairnv1.ListNamespacesRequest{Consistency: Serializable})
	if err != nil || ser.Header.GetConsistency() != Serializable || ser.Header.GetNodeId() != f.id {
		t.Fatalf("serializable ListNamespaces = %v, %v", ser, err)
	}
	list, err := f.namespaces().ListNamespaces(ctx, &cairnv1.ListNamespacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ns := range list.Namespaces {
		names = append(names, ns.Name)
	}
	if !slices.IsSorted(names) || !slices.Contains(names, "ns-a") || !slices.Contains(names, "ns-b") {
		t.Fatalf("ListNamespaces = %v, want ns-a and ns-b in name order", names)
	}

	// Delete is refused while objects exist; nothing is deleted.
	mustPutKey(t, f, "ns-b", "obj-1", "k", "v")
	mustPutKey(t, f, "ns-b", "obj-2", "k", "v")
	before := c.mustStateHash(t)
	_, err = f.namespaces().DeleteNamespace(ctx, &cairnv1.DeleteNamespaceRequest{Namespace: "ns-b"})
	wantCode(t, err, codes.FailedPrecondition, "ns-b", "2 objects", "force")
	if after := c.mustStateHash(t); !bytes.Equal(before, after) {
		t.Fatal("a refused DeleteNamespace changed the state")
	}
	if ns, err := l.FSM.Namespace("ns-b"); err != nil || ns.ObjectCount != 2 {
		t.Fatalf("after the refused delete ns-b = %v, %v", ns, err)
	}

	del, err := f.namespaces().DeleteNamespace(ctx, &cairnv1.DeleteNamespaceRequest{Namespace: "ns-b", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if del.DeletedObjects != 2 {
		t.Fatalf("forced DeleteNamespace deleted %d objects, want 2", del.DeletedObjects)
	}
	_, err = f.namespaces().GetNamespace(ctx, &cairnv1.GetNamespaceRequest{Namespace: "ns-b"})
	wantCode(t, err, codes.NotFound, "ns-b")
	_, err = f.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "ns-b", Object: "obj-1", Key: "k"})
	wantCode(t, err, codes.NotFound, "ns-b")
	_, err = l.namespaces().DeleteNamespace(ctx, &cairnv1.DeleteNamespaceRequest{Namespace: "ns-b"})
	wantCode(t, err, codes.NotFound, "ns-b")
	// An empty namespace deletes without force.
	if _, err := l.namespaces().DeleteNamespace(ctx, &cairnv1.DeleteNamespaceRequest{Namespace: "ns-a"}); err != nil {
		t.Fatalf("DeleteNamespace(ns-a), empty: %v", err)
	}
	// Recreating a deleted namespace starts it empty.
	mustPutNamespace(t, f, "ns-b")
	if objs := mustListObjects(t, f, "ns-b", "", 0); len(objs) != 0 {
		t.Fatalf("recreated namespace holds objects %v", objs)
	}
}

func testKeys(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	ctx := testCtx(t)
	mustPutNamespace(t, l, "keys")
	p1 := mustPutKey(t, f, "keys", "obj", "k", "one")
	if !p1.Created || p1.Header.GetRevision() != p1.Revision {
		t.Fatalf("first PutKey = %v, want created", p1)
	}
	g := mustGetKey(t, l, "keys", "obj", "k", "")
	if g.Key != "k" || g.GetValue().GetStringValue() != "one" || g.CreateRevision != p1.Revision || g.ModRevision != p1.Revision {
		t.Fatalf("GetKey = %v, want \"one\" created and modified at %d", g, p1.Revision)
	}
	p2 := mustPutKey(t, l, "keys", "obj", "k", "two")
	if p2.Created || p2.Revision <= p1.Revision {
		t.Fatalf("second PutKey = %v, want an update after %d", p2, p1.Revision)
	}
	g = mustGetKey(t, f, "keys", "obj", "k", Linearizable)
	if g.GetValue().GetStringValue() != "two" || g.CreateRevision != p1.Revision || g.ModRevision != p2.Revision {
		t.Fatalf("GetKey after update = %v, want \"two\" created at %d, modified at %d", g, p1.Revision, p2.Revision)
	}

	d, err := f.objects().DeleteKey(ctx, &cairnv1.DeleteKeyRequest{Namespace: "keys", Object: "obj", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Deleted || d.Revision <= p2.Revision || d.Header.GetRevision() != d.Revision {
		t.Fatalf("DeleteKey = %v", d)
	}
	_, err = l.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "keys", Object: "obj", Key: "k"})
	wantCode(t, err, codes.NotFound, "k")
	d, err = l.objects().DeleteKey(ctx, &cairnv1.DeleteKeyRequest{Namespace: "keys", Object: "obj", Key: "k"})
	if err != nil || d.Deleted {
		t.Fatalf("DeleteKey of a missing key = %v, %v; want deleted false", d, err)
	}
	// Recreating it starts a new life: a new create revision.
	p3 := mustPutKey(t, f, "keys", "obj", "k", "three")
	if g := mustGetKey(t, f, "keys", "obj", "k", ""); !p3.Created || g.CreateRevision != p3.Revision {
		t.Fatalf("recreated key: put %v, get %v", p3, g)
	}

	_, err = f.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "keys", Object: "no-such-object", Key: "k"})
	wantCode(t, err, codes.NotFound, "k")
	_, err = f.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "keys", Object: "obj", Key: "k", Consistency: "eventual"})
	wantCode(t, err, codes.InvalidArgument, "consistency", "eventual")
	_, err = f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "keys", Object: "obj", Key: "no-content"})
	wantCode(t, err, codes.InvalidArgument, "value")
}

// jsonDocs are JSON documents of every kind, by key.
var jsonDocs = map[string]any{
	"object": map[string]any{"name": "ada", "tags": []any{"x", "y"},
		"nested": map[string]any{"deep": true, "none": nil, "n": 2.5}},
	"array":        []any{1.0, "two", false, nil, []any{}, map[string]any{}},
	"string":       "héllo \"wörld\"\n\t<tag>&",
	"empty-string": "",
	"integer":      42.0,
	"negative":     -7.25,
	"huge":         1e300,
	"zero":         0.0,
	"null":         nil,
	"true":         true,
	"false":        false,
	"empty-object": map[string]any{},
	"empty-array":  []any{},
}

func testJSONValues(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	mustPutNamespace(t, f, "json")
	for key, doc := range jsonDocs {
		mustPutKey(t, f, "json", "docs", key, doc)
	}
	for key, doc := range jsonDocs {
		want := jsonValue(t, doc)
		got := mustGetKey(t, l, "json", "docs", key, "")
		if _, ok := got.Content.(*cairnv1.GetKeyResponse_Value); !ok || !proto.Equal(got.GetValue(), want) {
			t.Errorf("GetKey(%s) = %v, want %v", key, got.Content, want)
		}
	}
	// Listings and batch reads hand back the same documents.
	list, err := f.objects().ListKeys(testCtx(t), &cairnv1.ListKeysRequest{Namespace: "json", Object: "docs"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Kvs) != len(jsonDocs) {
		t.Fatalf("ListKeys returned %d keys, want %d", len(list.Kvs), len(jsonDocs))
	}
	var keys []string
	for _, kv := range list.Kvs {
		keys = append(keys, kv.Key)
		if !proto.Equal(kv.GetValue(), jsonValue(t, jsonDocs[kv.Key])) {
			t.Errorf("ListKeys: %s = %v, want %v", kv.Key, kv.GetValue(), jsonDocs[kv.Key])
		}
	}
	bg, err := l.objects().BatchGet(testCtx(t), &cairnv1.BatchGetRequest{Namespace: "json", Object: "docs", Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bg.Kvs {
		if !proto.Equal(kv.GetValue(), jsonValue(t, jsonDocs[kv.Key])) {
			t.Errorf("BatchGet: %s = %v, want %v", kv.Key, kv.GetValue(), jsonDocs[kv.Key])
		}
	}
}

func testBinaryValues(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	mustPutNamespace(t, l, "bin")
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	values := map[string][]byte{
		"all-bytes":    all,
		"empty":        {},
		"looks-json":   []byte(`{"a":1}`),
		"invalid-utf8": {0xff, 0xfe, 0x00, 0xc3},
	}
	for key, v := range values {
		_, err := f.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{Namespace: "bin", Object: "blobs", Key: key,
			Content: &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: v}})
		if err != nil {
			t.Fatalf("PutKey(%s): %v", key, err)
		}
	}
	for key, v := range values {
		got := mustGetKey(t, l, "bin", "blobs", key, "")
		bin, ok := got.Content.(*cairnv1.GetKeyResponse_BinaryValue)
		if !ok || !bytes.Equal(bin.BinaryValue, v) {
			t.Errorf("GetKey(%s) = %v, want binary %x", key, got.Content, v)
		}
	}
	bg, err := f.objects().BatchGet(testCtx(t), &cairnv1.BatchGetRequest{Namespace: "bin", Object: "blobs", Keys: []string{"all-bytes", "looks-json"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(bg.Kvs) != 2 || !bytes.Equal(bg.Kvs[0].GetBinaryValue(), all) || bg.Kvs[1].GetValue() != nil ||
		!bytes.Equal(bg.Kvs[1].GetBinaryValue(), values["looks-json"]) {
		t.Fatalf("BatchGet of binary values = %v", bg.Kvs)
	}
}

func testBatchGet(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	ctx := testCtx(t)
	mustPutNamespace(t, l, "bget")
	for _, k := range []string{"a", "b", "c"} {
		mustPutKey(t, l, "bget", "obj", k, "value of "+k)
	}
	resp, err := f.objects().BatchGet(ctx, &cairnv1.BatchGetRequest{Namespace: "bget", Object: "obj", Keys: []string{"c", "missing", "a", "b", "also-missing"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range resp.Kvs {
		got = append(got, kv.Key)
		if kv.GetValue().GetStringValue() != "value of "+kv.Key || kv.CreateRevision == 0 {
			t.Errorf("BatchGet: %v", kv)
		}
	}
	if !slices.Equal(got, []string{"c", "a", "b"}) {
		t.Fatalf("BatchGet returned %v, want [c a b]: the order asked, missing keys skipped", got)
	}
	if resp.Header.GetConsistency() != Linearizable {
		t.Errorf("BatchGet header = %v", resp.Header)
	}

	keys := make([]string, 129)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	if _, err := f.objects().BatchGet(ctx, &cairnv1.BatchGetRequest{Namespace: "bget", Object: "obj", Keys: keys[:128]}); err != nil {
		t.Fatalf("BatchGet of 128 keys: %v", err)
	}
	_, err = f.objects().BatchGet(ctx, &cairnv1.BatchGetRequest{Namespace: "bget", Object: "obj", Keys: keys})
	wantCode(t, err, codes.InvalidArgument, "keys", "129", "128")
	_, err = f.objects().BatchGet(ctx, &cairnv1.BatchGetRequest{Namespace: "bget", Object: "obj", Keys: []string{"a", ""}})
	wantCode(t, err, codes.InvalidArgument, "keys[1]")
	// An object without state has no keys; its namespace must exist.
	resp, err = f.objects().BatchGet(ctx, &cairnv1.BatchGetRequest{Namespace: "bget", Object: "none", Keys: []string{"a"}})
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("BatchGet of an empty object = %v, %v", resp, err)
	}
	_, err = f.objects().BatchGet(ctx, &cairnv1.BatchGetRequest{Namespace: "no-such-ns", Object: "obj", Keys: []string{"a"}})
	wantCode(t, err, codes.NotFound, "no-such-ns")
}

func putOf(key string, v any) *cairnv1.KeyPut {
	pv, err := structpb.NewValue(v)
	if err != nil {
		panic(err)
	}
	return &cairnv1.KeyPut{Key: key, Content: &cairnv1.KeyPut_Value{Value: pv}}
}

func testBatchWrite(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	ctx := testCtx(t)
	mustPutNamespace(t, l, "bwrite")
	w1, err := f.objects().BatchWrite(ctx, &cairnv1.BatchWriteRequest{Namespace: "bwrite", Object: "obj",
		Puts: []*cairnv1.KeyPut{putOf("a", 1.0), putOf("b", 2.0), putOf("c", 3.0)}})
	if err != nil {
		t.Fatal(err)
	}
	if w1.Created != 3 || w1.Deleted != 0 || w1.Revision == 0 {
		t.Fatalf("BatchWrite = %v, want 3 created", w1)
	}
	w2, err := l.objects().BatchWrite(ctx, &cairnv1.BatchWriteRequest{Namespace: "bwrite", Object: "obj",
		Puts: []*cairnv1.KeyPut{putOf("b", 20.0), putOf("d", 4.0)}, Deletes: []string{"a", "zz"}})
	if err != nil {
		t.Fatal(err)
	}
	if w2.Created != 1 || w2.Deleted != 1 {
		t.Fatalf("BatchWrite = %v, want 1 created, 1 deleted", w2)
	}
	all := mustListAll(t, f, "bwrite", "obj")
	if len(all) != 3 || all["b"].GetValue().GetNumberValue() != 20 || all["b"].CreateRevision != w1.Revision ||
		all["b"].ModRevision != w2.Revision || all["d"].CreateRevision != w2.Revision || all["c"].ModRevision != w1.Revision {
		t.Fatalf("after the batches the object holds %v", all)
	}

	// Atomicity: a batch with one bad key changes nothing, whether the
	// server or the state machine finds it.
	before := c.mustStateHash(t)
	long := strings.Repeat("k", fsm.MaxKeyBytes+1)
	bad := []struct {
		name  string
		req   *cairnv1.BatchWriteRequest
		code  codes.Code
		parts []string
	}{
		{"key too long", &cairnv1.BatchWriteRequest{Puts: []*cairnv1.KeyPut{putOf("x", 1.0), putOf("y", 2.0), putOf(long, 3.0)}, Deletes: []string{"b"}},
			codes.InvalidArgument, []string{"puts[2].key", "2049", "2048"}},
		{"empty delete", &cairnv1.BatchWriteRequest{Puts: []*cairnv1.KeyPut{putOf("x", 1.0)}, Deletes: []string{"c", ""}},
			codes.InvalidArgument, []string{"deletes[1]"}},
		{"key twice", &cairnv1.BatchWriteRequest{Puts: []*cairnv1.KeyPut{putOf("x", 1.0), putOf("x", 2.0)}, Deletes: []string{"b"}},
			codes.InvalidArgument, []string{"puts[1]", "twice"}},
		{"put and delete of one key", &cairnv1.BatchWriteRequest{Puts: []*cairnv1.KeyPut{putOf("x", 1.0), putOf("c", 2.0)}, Deletes: []string{"c"}},
			codes.InvalidArgument, []string{"twice"}},
		{"put without value", &cairnv1.BatchWriteRequest{Puts: []*cairnv1.KeyPut{putOf("x", 1.0), {Key: "y"}}},
			codes.InvalidArgument, []string{"puts[1]", "value"}},
	}
	for _, b := range bad {
		b.req.Namespace, b.req.Object = "bwrite", "obj"
		_, err := f.objects().BatchWrite(ctx, b.req)
		wantCode(t, err, b.code, b.parts...)
	}
	if after := c.mustStateHash(t); !bytes.Equal(before, after) {
		t.Fatal("rejected batches changed the state")
	}
	if got := mustListAll(t, l, "bwrite", "obj"); len(got) != 3 || got["x"] != nil || got["b"] == nil || got["c"] == nil {
		t.Fatalf("after rejected batches the object holds %v", got)
	}

	// Size bound: 128 operations pass, 129 do not.
	var puts []*cairnv1.KeyPut
	for i := range 128 {
		puts = append(puts, putOf(fmt.Sprintf("many-%03d", i), float64(i)))
	}
	if _, err := l.objects().BatchWrite(ctx, &cairnv1.BatchWriteRequest{Namespace: "bwrite", Object: "many", Puts: puts}); err != nil {
		t.Fatalf("BatchWrite of 128 puts: %v", err)
	}
	_, err = l.objects().BatchWrite(ctx, &cairnv1.BatchWriteRequest{Namespace: "bwrite", Object: "obj", Puts: puts, Deletes: []string{"c"}})
	wantCode(t, err, codes.InvalidArgument, "129", "128")
	if got := mustListAll(t, l, "bwrite", "obj"); len(got) != 3 {
		t.Fatalf("after an oversized batch the object holds %d keys, want 3", len(got))
	}
}

// mustListKeys returns the keys of one ListKeys call and its next page
// token.
func mustListKeys(t *testing.T, n *testNode, req *cairnv1.ListKeysRequest) ([]string, string) {
	t.Helper()
	resp, err := n.objects().ListKeys(testCtx(t), req)
	if err != nil {
		t.Fatalf("ListKeys(%v): %v", req, err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, kv.Key)
	}
	return keys, resp.NextPageToken
}

func testListKeysBounds(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	mustPutNamespace(t, l, "bounds")
	var puts []*cairnv1.KeyPut
	for _, k := range []string{"c", "ab", "a", "ba", "abc", "b"} {
		puts = append(puts, putOf(k, "v-"+k))
	}
	if _, err := l.objects().BatchWrite(testCtx(t), &cairnv1.BatchWriteRequest{Namespace: "bounds", Object: "r", Puts: puts}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		req  *cairnv1.ListKeysRequest
		want []string
	}{
		{"all", &cairnv1.ListKeysRequest{}, []string{"a", "ab", "abc", "b", "ba", "c"}},
		{"prefix", &cairnv1.ListKeysRequest{Prefix: "ab"}, []string{"ab", "abc"}},
		{"start", &cairnv1.ListKeysRequest{Start: "b"}, []string{"b", "ba", "c"}},
		{"start between keys", &cairnv1.ListKeysRequest{Start: "abd"}, []string{"b", "ba", "c"}},
		{"start_after", &cairnv1.ListKeysRequest{StartAfter: "b"}, []string{"ba", "c"}},
		{"end", &cairnv1.ListKeysRequest{End: "b"}, []string{"a", "ab", "abc"}},
		{"start and end", &cairnv1.ListKeysRequest{Start: "ab", End: "ba"}, []string{"ab", "abc", "b"}},
		{"start_after and end", &cairnv1.ListKeysRequest{StartAfter: "ab", End: "c"}, []string{"abc", "b", "ba"}},
		{"prefix and start", &cairnv1.ListKeysRequest{Prefix: "b", Start: "ba"}, []string{"ba"}},
		{"prefix and end", &cairnv1.ListKeysRequest{Prefix: "a", End: "ab"}, []string{"a"}},
		{"reverse", &cairnv1.ListKeysRequest{Reverse: true}, []string{"c", "ba", "b", "abc", "ab", "a"}},
		{"reverse prefix", &cairnv1.ListKeysRequest{Prefix: "a", Reverse: true}, []string{"abc", "ab", "a"}},
		{"reverse end", &cairnv1.ListKeysRequest{End: "b", Reverse: true}, []string{"abc", "ab", "a"}},
		{"reverse start", &cairnv1.ListKeysRequest{Start: "ab", Reverse: true}, []string{"c", "ba", "b", "abc", "ab"}},
		{"reverse start_after and end", &cairnv1.ListKeysRequest{StartAfter: "a", End: "ba", Reverse: true}, []string{"b", "abc", "ab"}},
		{"limit", &cairnv1.ListKeysRequest{Limit: 2}, []string{"a", "ab"}},
		{"reverse limit", &cairnv1.ListKeysRequest{Limit: 2, Reverse: true}, []string{"c", "ba"}},
		{"past the end", &cairnv1.ListKeysRequest{Start: "zz"}, nil},
		{"empty range", &cairnv1.ListKeysRequest{Start: "b", End: "b"}, nil},
		{"inverted range", &cairnv1.ListKeysRequest{Start: "c", End: "a"}, nil},
		{"no such prefix", &cairnv1.ListKeysRequest{Prefix: "abcd"}, nil},
	}
	for _, tc := range cases {
		tc.req.Namespace, tc.req.Object = "bounds", "r"
		got, token := mustListKeys(t, f, tc.req)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: ListKeys = %v, want %v", tc.name, got, tc.want)
		}
		if (token != "") != (tc.req.Limit != 0 && len(tc.want) == int(tc.req.Limit)) {
			t.Errorf("%s: next page token %q", tc.name, token)
		}
	}

	// keys_only: keys and revisions, no values.
	resp, err := l.objects().ListKeys(testCtx(t), &cairnv1.ListKeysRequest{Namespace: "bounds", Object: "r", KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 6 {
		t.Fatalf("keys_only listing has %d keys", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		if kv.Content != nil || kv.CreateRevision == 0 || kv.ModRevision == 0 {
			t.Errorf("keys_only listing holds %v", kv)
		}
	}
	// With values, each key carries its own.
	resp, err = l.objects().ListKeys(testCtx(t), &cairnv1.ListKeysRequest{Namespace: "bounds", Object: "r"})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if kv.GetValue().GetStringValue() != "v-"+kv.Key {
			t.Errorf("listing: %s = %v", kv.Key, kv.GetValue())
		}
	}

	// An object without state lists empty; bad arguments are refused.
	if got, _ := mustListKeys(t, f, &cairnv1.ListKeysRequest{Namespace: "bounds", Object: "nothing"}); len(got) != 0 {
		t.Errorf("listing an object without state = %v", got)
	}
	ctx := testCtx(t)
	_, err = f.objects().ListKeys(ctx, &cairnv1.ListKeysRequest{Namespace: "bounds", Object: "r", Limit: 1001})
	wantCode(t, err, codes.InvalidArgument, "limit", "1001", "1000")
	_, err = f.objects().ListKeys(ctx, &cairnv1.ListKeysRequest{Namespace: "bounds", Object: "r", PageToken: "not a token"})
	wantCode(t, err, codes.InvalidArgument, "page_token")
	_, err = f.objects().ListKeys(ctx, &cairnv1.ListKeysRequest{Namespace: "bounds", Object: "r", Start: strings.Repeat("s", fsm.MaxKeyBytes+1)})
	wantCode(t, err, codes.InvalidArgument, "start", "2048")
	_, err = f.objects().ListKeys(ctx, &cairnv1.ListKeysRequest{Namespace: "no-such-ns", Object: "r"})
	wantCode(t, err, codes.NotFound, "no-such-ns")
}

func testListKeysPaging(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	mustPutNamespace(t, l, "paging")
	var all []string
	for i := range 250 {
		all = append(all, fmt.Sprintf("key-%03d", i))
	}
	for _, chunk := range [][]string{all[:125], all[125:]} {
		var puts []*cairnv1.KeyPut
		for _, k := range chunk {
			puts = append(puts, putOf(k, k))
		}
		if _, err := f.objects().BatchWrite(testCtx(t), &cairnv1.BatchWriteRequest{Namespace: "paging", Object: "big", Puts: puts}); err != nil {
			t.Fatal(err)
		}
	}
	reversed := slices.Clone(all)
	slices.Reverse(reversed)
	prefixed := all[100:200]
	prefixedReversed := slices.Clone(prefixed)
	slices.Reverse(prefixedReversed)

	walk := func(base *cairnv1.ListKeysRequest, want []string, wantPages []int) {
		t.Helper()
		var got []string
		var pages []int
		token := ""
		for {
			req := proto.Clone(base).(*cairnv1.ListKeysRequest)
			req.Namespace, req.Object, req.PageToken = "paging", "big", token
			keys, next := mustListKeys(t, f, req)
			got = append(got, keys...)
			pages = append(pages, len(keys))
			if next == "" {
				break
			}
			if len(pages) > 10 {
				t.Fatalf("listing %v does not end", base)
			}
			token = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("walking %v: got %d keys %v..., want %d (no duplicates, no gaps)", base, len(got), got[:min(3, len(got))], len(want))
		}
		if !slices.Equal(pages, wantPages) {
			t.Errorf("walking %v: pages of %v, want %v", base, pages, wantPages)
		}
	}
	walk(&cairnv1.ListKeysRequest{Limit: 100}, all, []int{100, 100, 50})
	walk(&cairnv1.ListKeysRequest{Limit: 100, Reverse: true}, reversed, []int{100, 100, 50})
	walk(&cairnv1.ListKeysRequest{}, all, []int{100, 100, 50}) // default page size
	walk(&cairnv1.ListKeysRequest{Limit: 100, KeysOnly: true}, all, []int{100, 100, 50})
	walk(&cairnv1.ListKeysRequest{Limit: 30, Prefix: "key-1"}, prefixed, []int{30, 30, 30, 10})
	walk(&cairnv1.ListKeysRequest{Limit: 30, Prefix: "key-1", Reverse: true}, prefixedReversed, []int{30, 30, 30, 10})
	walk(&cairnv1.ListKeysRequest{Limit: 100, Prefix: "key-1"}, prefixed, []int{100})
	walk(&cairnv1.ListKeysRequest{Limit: 40, Start: "key-050", End: "key-150"}, all[50:150], []int{40, 40, 20})
	walk(&cairnv1.ListKeysRequest{Limit: 40, StartAfter: "key-050", End: "key-150", Reverse: true}, reversed[100:199], []int{40, 40, 19})

	// A token only continues the kind of listing that returned it.
	_, token := mustListKeys(t, f, &cairnv1.ListKeysRequest{Namespace: "paging", Object: "big", Limit: 10})
	_, err := f.objects().ListKeys(testCtx(t), &cairnv1.ListKeysRequest{Namespace: "paging", Object: "big", Reverse: true, PageToken: token})
	wantCode(t, err, codes.InvalidArgument, "page_token")
	_, err = f.objects().ListObjects(testCtx(t), &cairnv1.ListObjectsRequest{Namespace: "paging", PageToken: token})
	wantCode(t, err, codes.InvalidArgument, "page_token")
}

// testListKeysLargeValues: a page ends early once its values reach
// maxPageBytes, and the token continues it without gaps.
func testListKeysLargeValues(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	mustPutNamespace(t, l, "large")
	// One write per value: a single 6 MiB entry can outlast the short
	// leader lease of these tests under -race.
	for i := range 6 {
		key := fmt.Sprintf("big-%d", i)
		err := retryUnavailable(t, "PutKey "+key, func() error {
			_, err := l.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{Namespace: "large", Object: "o", Key: key, RequestId: "large-" + key,
				Content: &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: bytes.Repeat([]byte{byte(i)}, 1<<20)}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var pages []int
	seen := 0
	token := ""
	for {
		resp, err := f.objects().ListKeys(testCtx(t), &cairnv1.ListKeysRequest{Namespace: "large", Object: "o", PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if kv.Key != fmt.Sprintf("big-%d", seen) || len(kv.GetBinaryValue()) != 1<<20 || kv.GetBinaryValue()[0] != byte(seen) {
				t.Fatalf("key %d of the listing is %q with %d bytes", seen, kv.Key, len(kv.GetBinaryValue()))
			}
			seen++
		}
		pages = append(pages, len(resp.Kvs))
		if token = resp.NextPageToken; token == "" || len(pages) > 6 {
			break
		}
	}
	if seen != 6 || len(pages) < 2 {
		t.Fatalf("listing 6 values of 1 MiB took pages of %v keys, want every key and more than one page", pages)
	}
}

// mustListObjects walks a namespace's objects in pages of limit.
func mustListObjects(t *testing.T, n *testNode, ns, prefix string, limit uint32) []*cairnv1.ObjectInfo {
	t.Helper()
	var out []*cairnv1.ObjectInfo
	token := ""
	for {
		resp, err := n.objects().ListObjects(testCtx(t), &cairnv1.ListObjectsRequest{Namespace: ns, Prefix: prefix, Limit: limit, PageToken: token})
		if err != nil {
			t.Fatalf("ListObjects(%s, %q): %v", ns, prefix, err)
		}
		if limit != 0 && len(resp.Objects) > int(limit) {
			t.Fatalf("ListObjects page of %d objects, limit %d", len(resp.Objects), limit)
		}
		out = append(out, resp.Objects...)
		if token = resp.NextPageToken; token == "" {
			return out
		}
		if len(resp.Objects) == 0 {
			t.Fatalf("ListObjects returned an empty page with a next page token")
		}
	}
}

func testListObjects(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	mustPutNamespace(t, l, "objects")
	var want []string
	for i := range 12 {
		want = append(want, fmt.Sprintf("obj-%02d", i))
	}
	for _, name := range append(slices.Clone(want), "other-a", "other-b", "zzz") {
		mustPutKey(t, f, "objects", name, "k", name)
	}
	names := func(objs []*cairnv1.ObjectInfo) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.Name)
		}
		return out
	}
	if got := names(mustListObjects(t, f, "objects", "obj-", 5)); !slices.Equal(got, want) {
		t.Errorf("ListObjects(prefix obj-, pages of 5) = %v, want %v", got, want)
	}
	if got := names(mustListObjects(t, f, "objects", "other-", 1)); !slices.Equal(got, []string{"other-a", "other-b"}) {
		t.Errorf("ListObjects(prefix other-, pages of 1) = %v", got)
	}
	everything := append(slices.Clone(want), "other-a", "other-b", "zzz")
	objs := mustListObjects(t, l, "objects", "", 0)
	if got := names(objs); !slices.Equal(got, everything) {
		t.Errorf("ListObjects() = %v, want %v", got, everything)
	}
	for _, o := range objs {
		if o.KeyCount != 1 || o.Bytes == 0 || o.Shard != uint32(fsm.ShardOf("objects", o.Name)) || o.Revision == 0 || o.CreateRevision != o.Revision {
			t.Errorf("ListObjects: %v", o)
		}
	}
	if got := mustListObjects(t, l, "objects", "nothing-", 0); len(got) != 0 {
		t.Errorf("ListObjects(prefix nothing-) = %v", names(got))
	}
	first, err := f.objects().ListObjects(testCtx(t), &cairnv1.ListObjectsRequest{Namespace: "objects", Limit: 3})
	if err != nil || len(first.Objects) != 3 || first.NextPageToken == "" {
		t.Fatalf("ListObjects(limit 3) = %v, %v", first, err)
	}
	_, err = f.objects().ListObjects(testCtx(t), &cairnv1.ListObjectsRequest{Namespace: "objects", Limit: 1001})
	wantCode(t, err, codes.InvalidArgument, "limit", "1000")
	_, err = f.objects().ListObjects(testCtx(t), &cairnv1.ListObjectsRequest{Namespace: "objects", Prefix: strings.Repeat("p", fsm.MaxObjectNameBytes+1)})
	wantCode(t, err, codes.InvalidArgument, "prefix", "512")
	_, err = f.objects().ListObjects(testCtx(t), &cairnv1.ListObjectsRequest{Namespace: "no-such-ns"})
	wantCode(t, err, codes.NotFound, "no-such-ns")
}

func testObjectInfoAndDelete(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	ctx := testCtx(t)
	mustPutNamespace(t, l, "info")
	put := func(key string, n int) uint64 {
		t.Helper()
		resp, err := f.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "info", Object: "room", Key: key,
			Content: &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: bytes.Repeat([]byte("x"), n)}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Revision
	}
	info := func() *cairnv1.ObjectInfo {
		t.Helper()
		resp, err := f.objects().GetObject(ctx, &cairnv1.GetObjectRequest{Namespace: "info", Object: "room"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Object
	}
	r1 := put("k1", 10)
	r2 := put("k22", 5)
	want := &cairnv1.ObjectInfo{Name: "room", Revision: r2, CreateRevision: r1, KeyCount: 2, Bytes: 2 + 10 + 3 + 5, Shard: uint32(fsm.ShardOf("info", "room"))}
	if got := info(); !proto.Equal(got, want) {
		t.Fatalf("GetObject = %v, want %v", got, want)
	}
	r3 := put("k1", 3)
	want.Revision, want.Bytes = r3, 2+3+3+5
	if got := info(); !proto.Equal(got, want) {
		t.Fatalf("GetObject after an update = %v, want %v", got, want)
	}
	if ns, err := l.namespaces().GetNamespace(ctx, &cairnv1.GetNamespaceRequest{Namespace: "info"}); err != nil || ns.Namespace.ObjectCount != 1 {
		t.Fatalf("GetNamespace(info) = %v, %v; want 1 object", ns, err)
	}

	del, err := l.objects().DeleteObject(ctx, &cairnv1.DeleteObjectRequest{Namespace: "info", Object: "room"})
	if err != nil {
		t.Fatal(err)
	}
	if del.DeletedKeys != 2 || del.Header.GetRevision() <= r3 {
		t.Fatalf("DeleteObject = %v, want 2 keys deleted", del)
	}
	_, err = f.objects().GetObject(ctx, &cairnv1.GetObjectRequest{Namespace: "info", Object: "room"})
	wantCode(t, err, codes.NotFound, "room")
	_, err = f.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "info", Object: "room", Key: "k1"})
	wantCode(t, err, codes.NotFound, "k1")
	if objs := mustListObjects(t, f, "info", "", 0); len(objs) != 0 {
		t.Fatalf("objects after DeleteObject: %v", objs)
	}
	if ns, err := l.FSM.Namespace("info"); err != nil || ns.ObjectCount != 0 {
		t.Fatalf("namespace after DeleteObject = %v, %v; want 0 objects", ns, err)
	}
	// Deleting an object without state deletes nothing.
	del, err = f.objects().DeleteObject(ctx, &cairnv1.DeleteObjectRequest{Namespace: "info", Object: "room"})
	if err != nil || del.DeletedKeys != 0 {
		t.Fatalf("second DeleteObject = %v, %v", del, err)
	}
	// An object whose last key is deleted no longer exists.
	put("only", 1)
	if _, err := f.objects().DeleteKey(ctx, &cairnv1.DeleteKeyRequest{Namespace: "info", Object: "room", Key: "only"}); err != nil {
		t.Fatal(err)
	}
	_, err = f.objects().GetObject(ctx, &cairnv1.GetObjectRequest{Namespace: "info", Object: "room"})
	wantCode(t, err, codes.NotFound, "room")
	_, err = f.objects().GetObject(ctx, &cairnv1.GetObjectRequest{Namespace: "no-such-ns", Object: "room"})
	wantCode(t, err, codes.NotFound, "no-such-ns")
}
