package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// The REST gateway, run as subtests of TestAPI (api_test.go).

var restClient = &http.Client{Timeout: 15 * time.Second}

// restCall sends method to n's REST gateway at path, which is already
// percent-encoded, with a JSON body (none when empty).
func restCall(t *testing.T, n *testNode, method, path, body string) (int, []byte) {
	t.Helper()
	return restCallWith(t, n, method, path, body, nil)
}

// restCallWith is restCall with request headers.
func restCallWith(t *testing.T, n *testNode, method, path, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+n.Server.HTTPAddr()+path, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := restClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// restJSON sends a request that must answer want and returns its JSON
// body.
func restJSON(t *testing.T, n *testNode, method, path, body string, want int) map[string]any {
	t.Helper()
	code, b := restCall(t, n, method, path, body)
	if code != want {
		t.Fatalf("%s %s: HTTP %d %s, want %d", method, path, code, b, want)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, b, err)
	}
	return out
}

// mustJSON encodes v as JSON.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// revision reads a revision field, which proto3 JSON writes as a string.
func revision(t *testing.T, m map[string]any, field string) uint64 {
	t.Helper()
	s, ok := m[field].(string)
	if !ok {
		t.Fatalf("field %s of %v is %T, want a decimal string", field, m, m[field])
	}
	r, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("field %s = %q: %v", field, s, err)
	}
	return r
}

// escapeSegments percent-encodes each '/'-separated part of key and keeps
// the slashes raw.
func escapeSegments(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// restKeys are keys that a REST path must carry exactly.
var restKeys = []string{
	"plain",
	"with space",
	"a/b/c",
	"ключ/значение ü",
	"100%",
	"a%2Fb",   // a literal percent sign, 2, F: not a slash
	"a%252Fb", // and one more level of it
	"q?x=1&y=2#frag",
	"dir/",
	"/lead",
	"a//b",
	"x/../y",
	"./dot",
	"+plus;semi,comma=eq@at:colon$",
	"tab\there",
	"emoji 🦀",
	"a:batchGet",
}

func testRESTKeysAndNames(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	mustPutNamespace(t, l, "rest")
	objects := []string{"plain", "room 1/ü 50%"}
	for _, obj := range objects {
		base := "/v1/namespaces/rest/objects/" + url.PathEscape(obj) + "/keys/"
		for i, key := range restKeys {
			doc := map[string]any{"i": float64(i), "key": key, "list": []any{true, nil, "x"}}
			// Write with one encoding of the key, read with the other:
			// '/' escaped as %2F, or raw between escaped segments.
			putPath, getPath := url.PathEscape(key), escapeSegments(key)
			if i%2 == 1 {
				putPath, getPath = getPath, putPath
			}
			put := restJSON(t, f, http.MethodPut, base+putPath, `{"value": `+mustJSON(t, doc)+`}`, http.StatusOK)
			rev := revision(t, put, "revision")
			if put["created"] != true {
				t.Errorf("PUT %s%s: %v, want created", base, putPath, put)
			}
			got := restJSON(t, l, http.MethodGet, base+getPath, "", http.StatusOK)
			if got["key"] != key || !reflect.DeepEqual(got["value"], any(doc)) ||
				revision(t, got, "create_revision") != rev || revision(t, got, "mod_revision") != rev {
				t.Errorf("object %q key %q: PUT %s, GET %s = %v; want the key, value %v at revision %d",
					obj, key, putPath, getPath, got, doc, rev)
			}
			if _, ok := got["binary_value"]; ok {
				t.Errorf("GET of a JSON value holds binary_value: %v", got)
			}
		}
		// The server stored exactly the bytes meant: the object and every
		// key, as gRPC lists them.
		stored := mustListAll(t, l, "rest", obj)
		var keys []string
		for k := range stored {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := slices.Clone(restKeys)
		slices.Sort(want)
		if !slices.Equal(keys, want) {
			t.Errorf("object %q holds keys %q, want %q", obj, keys, want)
		}
		// Delete each key through the encoding it was not written with.
		for i, key := range restKeys {
			path := escapeSegments(key)
			if i%2 == 1 {
				path = url.PathEscape(key)
			}
			del := restJSON(t, l, http.MethodDelete, base+path, "", http.StatusOK)
			if del["deleted"] != true {
				t.Errorf("DELETE %s%s = %v, want deleted", base, path, del)
			}
		}
		if left := mustListAll(t, f, "rest", obj); len(left) != 0 {
			t.Errorf("object %q still holds %d keys after deleting each", obj, len(left))
		}
	}

	// Object names: any UTF-8, escaped as one path segment.
	names := []string{"room 1", "a/b/c", "ключ", "50%off", "x:y", "%2F", "a+b", "emoji 🦀"}
	for _, name := range names {
		path := "/v1/namespaces/rest/objects/" + url.PathEscape(name)
		restJSON(t, f, http.MethodPut, path+"/keys/"+escapeSegments("k/1 ü"), `{"value": "v"}`, http.StatusOK)
		info := restJSON(t, l, http.MethodGet, path, "", http.StatusOK)
		if obj, _ := info["object"].(map[string]any); obj["name"] != name || obj["key_count"] != "1" {
			t.Errorf("GET %s = %v, want object %q with 1 key", path, info, name)
		}
		bg := restJSON(t, f, http.MethodPost, path+":batchGet", `{"keys": ["k/1 ü", "missing"]}`, http.StatusOK)
		if kvs, _ := bg["kvs"].([]any); len(kvs) != 1 || kvs[0].(map[string]any)["key"] != "k/1 ü" {
			t.Errorf("POST %s:batchGet = %v", path, bg)
		}
		if _, err := l.FSM.Object("rest", name); err != nil {
			t.Errorf("object %q is not stored under its exact name: %v", name, err)
		}
	}
	var listed []string
	for _, o := range mustListObjects(t, l, "rest", "", 0) {
		listed = append(listed, o.Name)
	}
	want := slices.Clone(names)
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Errorf("namespace rest lists objects %q, want %q", listed, want)
	}
	for _, name := range names {
		del := restJSON(t, l, http.MethodDelete, "/v1/namespaces/rest/objects/"+url.PathEscape(name), "", http.StatusOK)
		if del["deleted_keys"] != "1" {
			t.Errorf("DELETE object %q = %v", name, del)
		}
	}
}

// testRESTServices calls every namespace and object RPC through REST.
func testRESTServices(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	put := restJSON(t, f, http.MethodPut, "/v1/namespaces/rest-svc", `{"settings": {"max_object_bytes": "100000"}}`, http.StatusOK)
	if ns, _ := put["namespace"].(map[string]any); put["created"] != true || ns["name"] != "rest-svc" {
		t.Fatalf("PUT namespace = %v", put)
	}
	got := restJSON(t, l, http.MethodGet, "/v1/namespaces/rest-svc", "", http.StatusOK)
	if ns, _ := got["namespace"].(map[string]any); ns["settings"].(map[string]any)["max_object_bytes"] != "100000" {
		t.Fatalf("GET namespace = %v", got)
	}
	list := restJSON(t, f, http.MethodGet, "/v1/namespaces?consistency=linearizable", "", http.StatusOK)
	if !strings.Contains(mustJSON(t, list["namespaces"]), `"name":"rest-svc"`) {
		t.Errorf("GET /v1/namespaces = %v", list)
	}

	obj := "/v1/namespaces/rest-svc/objects/o"
	bw := restJSON(t, f, http.MethodPost, obj+":batchWrite",
		`{"puts": [{"key": "a", "value": {"x": 1}}, {"key": "b", "binary_value": "AAEC/w=="}, {"key": "c", "value": [1, "two"]}], "deletes": ["zz"]}`, http.StatusOK)
	if bw["created"] != float64(3) || bw["deleted"] != float64(0) {
		t.Fatalf("POST :batchWrite = %v", bw)
	}
	bg := restJSON(t, l, http.MethodPost, obj+":batchGet", `{"keys": ["b", "missing", "a"]}`, http.StatusOK)
	kvs, _ := bg["kvs"].([]any)
	if len(kvs) != 2 {
		t.Fatalf("POST :batchGet = %v", bg)
	}
	b, a := kvs[0].(map[string]any), kvs[1].(map[string]any)
	if b["key"] != "b" || b["binary_value"] != "AAEC/w==" || a["key"] != "a" || !reflect.DeepEqual(a["value"], map[string]any{"x": 1.0}) {
		t.Fatalf("POST :batchGet kvs = %v", kvs)
	}

	// Top-level JSON values of every kind, zero values included.
	for i, doc := range []string{`null`, `0`, `false`, `true`, `""`, `{}`, `[]`, `"<&>"`, `-2.5`, `{"a": [null, {"b": ""}]}`} {
		path := obj + "/keys/doc-" + strconv.Itoa(i)
		restJSON(t, f, http.MethodPut, path, `{"value": `+doc+`}`, http.StatusOK)
		got := restJSON(t, l, http.MethodGet, path, "", http.StatusOK)
		var want any
		if err := json.Unmarshal([]byte(doc), &want); err != nil {
			t.Fatal(err)
		}
		if v, ok := got["value"]; !ok || !reflect.DeepEqual(v, want) {
			t.Errorf("PUT then GET of %s answers %v", doc, got)
		}
		restJSON(t, f, http.MethodDelete, path, "", http.StatusOK)
	}

	// A binary value through PUT and GET.
	raw := []byte{0, 1, 2, 0xff, '{'}
	restJSON(t, f, http.MethodPut, obj+"/keys/bin", `{"binary_value": "`+base64.StdEncoding.EncodeToString(raw)+`"}`, http.StatusOK)
	gk := restJSON(t, l, http.MethodGet, obj+"/keys/bin?consistency=serializable", "", http.StatusOK)
	if dec, err := base64.StdEncoding.DecodeString(gk["binary_value"].(string)); err != nil || !bytes.Equal(dec, raw) {
		t.Fatalf("GET binary key = %v", gk)
	}
	if _, ok := gk["value"]; ok {
		t.Errorf("GET of a binary value holds value: %v", gk)
	}

	// Listing keys with query parameters, page by page.
	var walked []string
	token := ""
	for range 10 {
		page := restJSON(t, f, http.MethodGet, obj+"/keys?limit=2&page_token="+url.QueryEscape(token), "", http.StatusOK)
		for _, kv := range page["kvs"].([]any) {
			walked = append(walked, kv.(map[string]any)["key"].(string))
		}
		if token, _ = page["next_page_token"].(string); token == "" {
			break
		}
	}
	if !slices.Equal(walked, []string{"a", "b", "bin", "c"}) {
		t.Errorf("REST key listing in pages of 2 = %v", walked)
	}
	rev := restJSON(t, f, http.MethodGet, obj+"/keys?reverse=true&prefix=b&keys_only=true", "", http.StatusOK)
	rk := rev["kvs"].([]any)
	if len(rk) != 2 || rk[0].(map[string]any)["key"] != "bin" || rk[1].(map[string]any)["key"] != "b" {
		t.Errorf("REST reverse prefix listing = %v", rev)
	}
	for _, kv := range rk {
		if _, ok := kv.(map[string]any)["value"]; ok {
			t.Errorf("keys_only listing holds a value: %v", kv)
		}
	}
	rng := restJSON(t, f, http.MethodGet, obj+"/keys?start_after=a&end=c", "", http.StatusOK)
	if got := mustJSON(t, rng["kvs"]); !strings.Contains(got, `"key":"b"`) || strings.Contains(got, `"key":"a"`) || strings.Contains(got, `"key":"c"`) {
		t.Errorf("REST listing (a, c) = %s", got)
	}

	objs := restJSON(t, l, http.MethodGet, "/v1/namespaces/rest-svc/objects?prefix=o&limit=10", "", http.StatusOK)
	if ol := objs["objects"].([]any); len(ol) != 1 || ol[0].(map[string]any)["name"] != "o" {
		t.Errorf("GET objects = %v", objs)
	}
	info := restJSON(t, f, http.MethodGet, obj, "", http.StatusOK)
	if o := info["object"].(map[string]any); o["key_count"] != "4" || o["name"] != "o" {
		t.Errorf("GET object = %v", info)
	}
	dk := restJSON(t, f, http.MethodDelete, obj+"/keys/a", "", http.StatusOK)
	if dk["deleted"] != true {
		t.Errorf("DELETE key = %v", dk)
	}
	do := restJSON(t, l, http.MethodDelete, obj, "", http.StatusOK)
	if do["deleted_keys"] != "3" {
		t.Errorf("DELETE object = %v", do)
	}
	restJSON(t, f, http.MethodDelete, "/v1/namespaces/rest-svc", "", http.StatusOK)
	restJSON(t, f, http.MethodGet, "/v1/namespaces/rest-svc", "", http.StatusNotFound)

	cl := restJSON(t, f, http.MethodGet, "/v1/cluster", "", http.StatusOK)
	if m, _ := cl["members"].([]any); len(m) != 3 || cl["leader_id"] != l.id {
		t.Errorf("GET /v1/cluster = %v", cl)
	}
}

// testRESTErrors checks that errors map to HTTP statuses with a JSON
// body holding the gRPC code and the message, and change nothing.
func testRESTErrors(t *testing.T, c *testCluster) {
	f, l := some(t, c)
	mustPutNamespace(t, l, "rest-err")
	restJSON(t, f, http.MethodPut, "/v1/namespaces/rest-quota", `{"settings": {"max_object_bytes": 32}}`, http.StatusOK)
	mustPutKey(t, f, "rest-err", "obj", "k", "v")

	long := strings.Repeat("k", 2049)
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     codes.Code
		parts                    []string
	}{
		{"key too long", http.MethodPut, "/v1/namespaces/rest-err/objects/obj/keys/" + long, `{"value": 1}`,
			http.StatusBadRequest, codes.InvalidArgument, []string{"key", "2049", "2048"}},
		{"object name too long", http.MethodGet, "/v1/namespaces/rest-err/objects/" + strings.Repeat("o", 513), "",
			http.StatusBadRequest, codes.InvalidArgument, []string{"object", "512"}},
		{"value too large", http.MethodPut, "/v1/namespaces/rest-err/objects/obj/keys/big", `{"value": "` + strings.Repeat("v", 1<<20) + `"}`,
			http.StatusBadRequest, codes.InvalidArgument, []string{"value", "1048576"}},
		{"unknown namespace", http.MethodGet, "/v1/namespaces/nope/objects/obj/keys/k", "",
			http.StatusNotFound, codes.NotFound, []string{"nope"}},
		{"write in an unknown namespace", http.MethodPut, "/v1/namespaces/nope/objects/obj/keys/k", `{"value": 1}`,
			http.StatusNotFound, codes.NotFound, []string{"nope"}},
		{"missing key", http.MethodGet, "/v1/namespaces/rest-err/objects/obj/keys/missing", "",
			http.StatusNotFound, codes.NotFound, []string{"missing"}},
		{"over quota", http.MethodPut, "/v1/namespaces/rest-quota/objects/obj/keys/k", `{"value": "` + strings.Repeat("q", 40) + `"}`,
			http.StatusTooManyRequests, codes.ResourceExhausted, []string{"max_object_bytes", "32"}},
		{"namespace not empty", http.MethodDelete, "/v1/namespaces/rest-err", "",
			http.StatusBadRequest, codes.FailedPrecondition, []string{"force"}},
		{"batch too large", http.MethodPost, "/v1/namespaces/rest-err/objects/obj:batchGet", `{"keys": [` + strings.Repeat(`"k",`, 128) + `"k"]}`,
			http.StatusBadRequest, codes.InvalidArgument, []string{"128"}},
		{"bad page token", http.MethodGet, "/v1/namespaces/rest-err/objects/obj/keys?page_token=xyz", "",
			http.StatusBadRequest, codes.InvalidArgument, []string{"page_token"}},
		{"no value", http.MethodPut, "/v1/namespaces/rest-err/objects/obj/keys/k", `{}`,
			http.StatusBadRequest, codes.InvalidArgument, []string{"value"}},
		{"body not JSON", http.MethodPut, "/v1/namespaces/rest-err/objects/obj/keys/k", `{"value": `,
			http.StatusBadRequest, codes.InvalidArgument, nil},
	}
	for _, tc := range cases {
		before := c.mustStateHash(t)
		got := restJSON(t, f, tc.method, tc.path, tc.body, tc.status)
		msg, ok := got["message"].(string)
		if got["code"] != float64(tc.code) || !ok {
			t.Errorf("%s: body %v, want code %d (%s) and a message", tc.name, got, tc.code, tc.code)
		}
		for _, p := range tc.parts {
			if !strings.Contains(msg, p) {
				t.Errorf("%s: message %q does not mention %q", tc.name, msg, p)
			}
		}
		if after := c.mustStateHash(t); !bytes.Equal(before, after) {
			t.Errorf("%s: the refused request changed the state", tc.name)
		}
	}
	if g := mustGetKey(t, l, "rest-err", "obj", "k", ""); g.GetValue().GetStringValue() != "v" {
		t.Errorf("after the refused requests k = %v", g.GetValue())
	}
	if _, err := l.FSM.Object("rest-quota", "obj"); err == nil {
		t.Errorf("the write over quota created its object")
	}
}

// testProbes checks /healthz, /readyz and /metrics on every node.
func testProbes(t *testing.T, c *testCluster) {
	for _, n := range c.running() {
		restJSON(t, n, http.MethodGet, "/v1/cluster", "", http.StatusOK) // one request for the request counter
		if code, body := restCall(t, n, http.MethodGet, "/healthz", ""); code != http.StatusOK {
			t.Errorf("%s /healthz: HTTP %d %s", n.id, code, body)
		}
		if code, body := restCall(t, n, http.MethodGet, "/readyz", ""); code != http.StatusOK {
			t.Errorf("%s /readyz: HTTP %d %s", n.id, code, body)
		}
		code, body := restCall(t, n, http.MethodGet, "/metrics", "")
		if code != http.StatusOK || !bytes.Contains(body, []byte("cairn_raft_applied_index")) ||
			!bytes.Contains(body, []byte("cairn_grpc_requests_total")) || !bytes.Contains(body, []byte("cairn_watch_streams")) ||
			!bytes.Contains(body, []byte("cairn_propose_seconds")) {
			t.Errorf("%s /metrics: HTTP %d, %d bytes without the cairn metrics", n.id, code, len(body))
		}
	}
	// The applied index the metric reports is the node's; the shard
	// metrics add up to the objects the node holds.
	n := c.leader(t)
	mustPutNamespace(t, n, "probes")
	mustPutKey(t, n, "probes", "o", "k", 1)
	_, body := restCall(t, n, http.MethodGet, "/metrics", "")
	stats, err := n.FSM.ShardStats()
	if err != nil {
		t.Fatal(err)
	}
	var objects, metricObjects float64
	for _, s := range stats {
		objects += float64(s.Objects)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "cairn_shard_objects{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			metricObjects += v
		}
	}
	if objects == 0 || metricObjects != objects {
		t.Errorf("cairn_shard_objects add up to %v, the FSM holds %v objects", metricObjects, objects)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "cairn_raft_applied_index "); ok {
			got, err := strconv.ParseFloat(v, 64)
			if err != nil || got < 1 || uint64(got) > n.FSM.AppliedIndex() {
				t.Errorf("cairn_raft_applied_index = %q, applied index %d", v, n.FSM.AppliedIndex())
			}
		}
	}
}
