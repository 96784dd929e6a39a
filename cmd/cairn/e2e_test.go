package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode/wal"
)

// These tests run the real binary as separate processes and talk to them
// over real TCP, through REST only.

// e2eClient bounds every request so that a hung node fails the test
// instead of hanging it.
var e2eClient = &http.Client{Timeout: 20 * time.Second}

// e2eTokens holds the bearer token rest sends to a host:port (for
// clusters with authentication on, like cairn dev's).
var e2eTokens sync.Map

// e2eNode is one `cairn serve` process and the flags it was started with,
// so that it can be started again the same way.
type e2eNode struct {
	id                   string
	dir                  string // working directory; data lives in dir/data
	raft, grpc, httpAddr string
	args                 []string
	env                  []string
	bin                  string // the binary to run; empty: this build's
	p                    *proc
}

// newE2ENode describes node id with its data under a fresh temporary
// directory and its three addresses on the given ports; extra flags are
// appended to the common ones.
func newE2ENode(t *testing.T, id string, raftPort, grpcPort, httpPort int, extra ...string) *e2eNode {
	t.Helper()
	n := &e2eNode{
		id:       id,
		dir:      t.TempDir(),
		raft:     fmt.Sprintf("127.0.0.1:%d", raftPort),
		grpc:     fmt.Sprintf("127.0.0.1:%d", grpcPort),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", httpPort),
	}
	n.args = append([]string{
		"serve", "--id", id, "--data-dir", filepath.Join(n.dir, "data"),
		"--raft-addr", n.raft, "--grpc-addr", n.grpc, "--http-addr", n.httpAddr,
		"--log-level", "warn", "--insecure-no-auth",
	}, extra...)
	return n
}

// start starts (or restarts) the node's process with its flags.
func (n *e2eNode) start(t *testing.T) {
	t.Helper()
	if n.bin != "" {
		n.p = startBinary(t, n.bin, n.dir, n.env, n.args...)
		return
	}
	n.p = startCairnEnv(t, n.dir, n.env, n.args...)
}

func (n *e2eNode) base() string { return "http://" + n.httpAddr }

// startCairnEnv is startCairn with extra environment variables; the
// CAIRN_* variables of the test's own environment are left out so that
// they cannot change what a test means.
func startCairnEnv(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	if len(env) == 0 && !hasCairnEnv() {
		return startCairn(t, dir, args...)
	}
	return startBinary(t, cairnBin, dir, env, args...)
}

// startBinary starts bin (this build or another one) with args in dir, with
// env added to a CAIRN_*-free environment; the process is killed when the
// test ends.
func startBinary(t *testing.T, bin, dir string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	return startProc(t, cmd)
}

func hasCairnEnv() bool {
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CAIRN_") {
			return true
		}
	}
	return false
}

// cleanEnv is the test's environment without CAIRN_* variables.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			out = append(out, kv)
		}
	}
	return out
}

// rest sends method url with body (JSON-encoded unless nil or already
// []byte) and returns the status and the response body.
func rest(method, u string, body any) (int, []byte, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		return 0, nil, err
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok, ok := e2eTokens.Load(req.URL.Host); ok {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	resp, err := e2eClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// mustREST sends the request, fails the test unless it answers 200, and
// decodes the answer into out (when out is not nil).
func mustREST(t *testing.T, method, u string, body, out any) {
	t.Helper()
	status, b, err := rest(method, u, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	if status != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d: %s", method, u, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, u, b, err)
		}
	}
}

// JSON shapes of the answers (64-bit numbers are strings in proto3 JSON).
type (
	headerJSON struct {
		Revision    string `json:"revision"`
		NodeID      string `json:"node_id"`
		Consistency string `json:"consistency"`
	}
	kvJSON struct {
		Key            string          `json:"key"`
		Value          json.RawMessage `json:"value"`
		CreateRevision string          `json:"create_revision"`
		ModRevision    string          `json:"mod_revision"`
		Header         headerJSON      `json:"header"`
	}
	kvsJSON struct {
		Header        headerJSON `json:"header"`
		KVs           []kvJSON   `json:"kvs"`
		NextPageToken string     `json:"next_page_token"`
	}
	objectJSON struct {
		Name      string `json:"name"`
		Revision  string `json:"revision"`
		KeyCount  string `json:"key_count"`
		Bytes     string `json:"bytes"`
		Shard     *int   `json:"shard"`
		CreateRev string `json:"create_revision"`
	}
	writeJSON struct {
		Header   headerJSON `json:"header"`
		Revision string     `json:"revision"`
		Created  any        `json:"created"`
		Deleted  any        `json:"deleted"`
	}
	memberJSON struct {
		ID       string `json:"id"`
		RaftAddr string `json:"raft_addr"`
		GRPCAddr string `json:"grpc_addr"`
		HTTPAddr string `json:"http_addr"`
		Voter    bool   `json:"voter"`
		Leader   bool   `json:"leader"`
	}
	clusterJSON struct {
		Header   headerJSON   `json:"header"`
		LeaderID string       `json:"leader_id"`
		Term     string       `json:"term"`
		State    string       `json:"state"`
		Members  []memberJSON `json:"members"`
	}
)

// escapeKey percent-encodes each '/'-separated segment of key.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func nsURL(base, ns string) string {
	return base + "/v1/namespaces/" + url.PathEscape(ns)
}

func objURL(base, ns, obj string) string {
	return nsURL(base, ns) + "/objects/" + url.PathEscape(obj)
}

func keyURL(base, ns, obj, key string) string {
	return objURL(base, ns, obj) + "/keys/" + escapeKey(key)
}

// jsonEqual reports whether two JSON documents are equal as values.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// e2eKV is an acknowledged write: value is the key's JSON value, or nil
// once the key was deleted.
type e2eKV struct {
	obj, key string
	value    json.RawMessage
}

// putKey writes value under obj/key through base and returns the revision.
func putKey(t *testing.T, base, ns, obj, key string, value json.RawMessage) uint64 {
	t.Helper()
	var w writeJSON
	mustREST(t, http.MethodPut, keyURL(base, ns, obj, key), map[string]json.RawMessage{"value": value}, &w)
	rev, err := strconv.ParseUint(w.Revision, 10, 64)
	if err != nil || rev == 0 {
		t.Fatalf("PUT %q/%q via %s: revision %q", obj, key, base, w.Revision)
	}
	return rev
}

// getKey reads obj/key through base at consistency ("" for the default)
// and returns the status and the decoded answer.
func getKey(base, ns, obj, key, consistency string) (int, kvJSON, error) {
	u := keyURL(base, ns, obj, key)
	if consistency != "" {
		u += "?consistency=" + consistency
	}
	var kv kvJSON
	status, b, err := rest(http.MethodGet, u, nil)
	if err == nil && status == http.StatusOK {
		err = json.Unmarshal(b, &kv)
	}
	return status, kv, err
}

// checkKey fails unless a linearizable read of kv through base returns
// exactly kv's key and value (or 404 when kv was deleted).
func checkKey(t *testing.T, base, ns string, kv e2eKV) {
	t.Helper()
	status, got, err := getKey(base, ns, kv.obj, kv.key, "")
	if err != nil {
		t.Fatalf("GET %q/%q via %s: %v", kv.obj, kv.key, base, err)
	}
	if kv.value == nil {
		if status != http.StatusNotFound {
			t.Fatalf("GET deleted %q/%q via %s: HTTP %d, want 404", kv.obj, kv.key, base, status)
		}
		return
	}
	if status != http.StatusOK {
		t.Fatalf("GET %q/%q via %s: HTTP %d", kv.obj, kv.key, base, status)
	}
	if got.Key != kv.key || !jsonEqual(got.Value, kv.value) {
		t.Fatalf("GET %q/%q via %s: key %q value %s, want key %q value %s", kv.obj, kv.key, base, got.Key, got.Value, kv.key, kv.value)
	}
	if got.Header.Consistency != "linearizable" {
		t.Fatalf("GET %q/%q via %s: header consistency %q, want linearizable", kv.obj, kv.key, base, got.Header.Consistency)
	}
}

// checkKeySerializable polls a serializable read of kv through base until
// it shows kv's value.
func checkKeySerializable(t *testing.T, base, ns string, kv e2eKV) {
	t.Helper()
	waitForDetail(t, 10*time.Second, fmt.Sprintf("serializable read of %q/%q via %s", kv.obj, kv.key, base), func() (bool, string) {
		status, got, err := getKey(base, ns, kv.obj, kv.key, "serializable")
		return err == nil && status == http.StatusOK && got.Key == kv.key && jsonEqual(got.Value, kv.value) &&
			got.Header.Consistency == "serializable", fmt.Sprintf("HTTP %d %+v %v", status, got, err)
	})
}

// waitForDetail is waitFor for a condition that also describes what it
// last saw, which the failure reports.
func waitForDetail(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	last, done := "", false
	defer func() {
		if !done {
			t.Logf("%s: last seen: %s", what, last)
		}
	}()
	waitFor(t, timeout, what, func() bool {
		ok, detail := cond()
		last = detail
		return ok
	})
	done = true
}

// getCluster reads GET /v1/cluster through base.
func getCluster(base string) (clusterJSON, error) {
	var c clusterJSON
	status, b, err := rest(http.MethodGet, base+"/v1/cluster", nil)
	if err != nil {
		return c, err
	}
	if status != http.StatusOK {
		return c, fmt.Errorf("HTTP %d: %s", status, b)
	}
	return c, json.Unmarshal(b, &c)
}

// waitAllReady waits until every node answers /readyz with 200.
func waitAllReady(t *testing.T, timeout time.Duration, nodes ...*e2eNode) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, timeout, n.id+" /readyz", func() bool { return httpOK(n.base() + "/readyz") })
	}
}

// waitMembers waits until base reports exactly the nodes as members, each
// with its published addresses, and one leader among them; it returns the
// leader's id.
func waitMembers(t *testing.T, base string, nodes ...*e2eNode) string {
	t.Helper()
	leader := ""
	waitForDetail(t, 30*time.Second, "members of "+base, func() (bool, string) {
		last, err := getCluster(base)
		detail := fmt.Sprintf("%+v %v", last, err)
		if err != nil || len(last.Members) != len(nodes) {
			return false, detail
		}
		leaders := 0
		leader = ""
		for _, n := range nodes {
			found := false
			for _, m := range last.Members {
				if m.ID == n.id {
					found = m.RaftAddr == n.raft && m.GRPCAddr == n.grpc && m.HTTPAddr == n.httpAddr && m.Voter
					if m.Leader {
						leaders++
						leader = m.ID
					}
				}
			}
			if !found {
				return false, detail
			}
		}
		return leaders == 1 && last.LeaderID == leader, detail
	})
	return leader
}

// nodeByID returns the node with id.
func nodeByID(t *testing.T, id string, nodes []*e2eNode) *e2eNode {
	t.Helper()
	for _, n := range nodes {
		if n.id == id {
			return n
		}
	}
	t.Fatalf("no node %q", id)
	return nil
}

// TestThreeProcessCluster runs three `cairn serve` processes formed with
// --initial-cluster, writes and reads through all of them with awkward
// names, kills the leader with SIGKILL, and brings it back.
func TestThreeProcessCluster(t *testing.T) {
	nodes, _ := newThreeNodes(t, nil)
	for _, n := range nodes {
		n.start(t)
	}
	waitAllReady(t, 30*time.Second, nodes...)

	const ns = "e2e-ns"
	mustREST(t, http.MethodPut, nsURL(nodes[0].base(), ns), map[string]any{"settings": map[string]any{"max_object_bytes": 0}}, nil)

	const room = "rooms/général 1"
	writes := []e2eKV{
		{room, "msgs/2026 11/ünïcode ✓", json.RawMessage(`{"from": "zoë", "text": "héllo wörld ✓", "n": 1}`)},
		{room, "msgs/2026 11/0002", json.RawMessage(`["a", 2, true, null, {"nested": "ß"}]`)},
		{room, "msgs/2026 12/日本語 キー", json.RawMessage(`"just a string"`)},
		{room, "meta", json.RawMessage(`{"topic": "a b/c"}`)},
		{room, "pct/100% sure?#frag", json.RawMessage(`42.5`)},
		{"plain", "k", json.RawMessage(`true`)},
		{"user sessions/ämber", "state/x y", json.RawMessage(`{"cart": []}`)},
		// A literal "%2F" is not a slash, in names and in keys.
		{"lit%2Fobj", "lit%2Fkey/x", json.RawMessage(`"percent"`)},
		{"lit/obj", "lit/key/x", json.RawMessage(`"slash"`)},
		// Empty and dot segments are part of the key, not cleaned away.
		{"plain", "dirs//x/", json.RawMessage(`"double and trailing slash"`)},
		{"plain", "a/../b/./c", json.RawMessage(`"dots"`)},
	}
	// Each write goes through a different node: two of three are
	// followers, which forward to the leader.
	for i, w := range writes {
		putKey(t, nodes[i%3].base(), ns, w.obj, w.key, w.value)
	}
	// The same key, its slashes encoded as %2F, is the same key.
	{
		u := objURL(nodes[1].base(), ns, room) + "/keys/" + url.PathEscape("msgs/2026 11/ünïcode ✓")
		status, b, err := rest(http.MethodGet, u, nil)
		var kv kvJSON
		if err != nil || status != http.StatusOK || json.Unmarshal(b, &kv) != nil || kv.Key != "msgs/2026 11/ünïcode ✓" {
			t.Fatalf("GET %s: HTTP %d %s %v", u, status, b, err)
		}
	}
	for _, w := range writes {
		for _, n := range nodes {
			checkKey(t, n.base(), ns, w)
			checkKeySerializable(t, n.base(), ns, w)
		}
	}

	// Listing a prefix, on every node, in key byte order.
	var wantMsgs []string
	for _, w := range writes {
		if w.obj == room && strings.HasPrefix(w.key, "msgs/") {
			wantMsgs = append(wantMsgs, w.key)
		}
	}
	sort.Strings(wantMsgs)
	for _, n := range nodes {
		var l kvsJSON
		mustREST(t, http.MethodGet, objURL(n.base(), ns, room)+"/keys?prefix="+url.QueryEscape("msgs/"), nil, &l)
		var got []string
		for _, kv := range l.KVs {
			got = append(got, kv.Key)
			for _, w := range writes {
				if w.obj == room && w.key == kv.Key && !jsonEqual(kv.Value, w.value) {
					t.Errorf("%s: list %q: value %s, want %s", n.id, kv.Key, kv.Value, w.value)
				}
			}
		}
		if !reflect.DeepEqual(got, wantMsgs) {
			t.Fatalf("%s: keys with prefix msgs/: %q, want %q", n.id, got, wantMsgs)
		}
		// A range in the other direction, two at a time.
		mustREST(t, http.MethodGet, objURL(n.base(), ns, room)+"/keys?prefix="+url.QueryEscape("msgs/")+"&reverse=true&limit=2&keys_only=true", nil, &l)
		if len(l.KVs) != 2 || l.KVs[0].Key != wantMsgs[2] || l.KVs[1].Key != wantMsgs[1] || l.NextPageToken == "" {
			t.Fatalf("%s: reverse listing: %+v", n.id, l)
		}
	}

	// Objects: listing (all and by prefix) and one object's info.
	wantObjects := map[string]int{}
	for _, w := range writes {
		wantObjects[w.obj]++
	}
	for _, n := range nodes {
		var lo struct {
			Objects []objectJSON `json:"objects"`
		}
		mustREST(t, http.MethodGet, nsURL(n.base(), ns)+"/objects", nil, &lo)
		got := map[string]int{}
		for _, o := range lo.Objects {
			c, _ := strconv.Atoi(o.KeyCount)
			got[o.Name] = c
		}
		if !reflect.DeepEqual(got, wantObjects) {
			t.Fatalf("%s: objects %v, want %v", n.id, got, wantObjects)
		}
		mustREST(t, http.MethodGet, nsURL(n.base(), ns)+"/objects?prefix="+url.QueryEscape("rooms/"), nil, &lo)
		if len(lo.Objects) != 1 || lo.Objects[0].Name != room {
			t.Fatalf("%s: objects with prefix rooms/: %+v", n.id, lo.Objects)
		}
		var gi struct {
			Object objectJSON `json:"object"`
		}
		mustREST(t, http.MethodGet, objURL(n.base(), ns, room), nil, &gi)
		if gi.Object.Name != room || gi.Object.KeyCount != strconv.Itoa(wantObjects[room]) || gi.Object.Shard == nil ||
			*gi.Object.Shard < 0 || *gi.Object.Shard > 255 || gi.Object.Revision == "" || gi.Object.Revision == "0" {
			t.Fatalf("%s: object info %+v", n.id, gi.Object)
		}
	}

	// An atomic batch through a follower, read back with a batch get
	// through another node.
	batch := map[string]any{
		"puts": []map[string]any{
			{"key": "batch/é 1", "value": map[string]any{"i": 1}},
			{"key": "batch/é 2", "value": []any{"two"}},
		},
		"deletes": []string{"meta"},
	}
	var bw writeJSON
	mustREST(t, http.MethodPost, objURL(nodes[1].base(), ns, room)+":batchWrite", batch, &bw)
	if fmt.Sprint(bw.Created) != "2" || fmt.Sprint(bw.Deleted) != "1" {
		t.Fatalf("batchWrite: %+v, want created 2 deleted 1", bw)
	}
	for i := range writes {
		if writes[i].obj == room && writes[i].key == "meta" {
			writes[i].value = nil
		}
	}
	writes = append(writes,
		e2eKV{room, "batch/é 1", json.RawMessage(`{"i": 1}`)},
		e2eKV{room, "batch/é 2", json.RawMessage(`["two"]`)})
	for _, n := range nodes {
		var bg kvsJSON
		mustREST(t, http.MethodPost, objURL(n.base(), ns, room)+":batchGet",
			map[string]any{"keys": []string{"batch/é 2", "meta", "nope", "batch/é 1", "msgs/2026 11/ünïcode ✓"}}, &bg)
		got := map[string]string{}
		for _, kv := range bg.KVs {
			got[kv.Key] = string(kv.Value)
		}
		if len(got) != 3 || !jsonEqual([]byte(got["batch/é 1"]), []byte(`{"i": 1}`)) ||
			!jsonEqual([]byte(got["batch/é 2"]), []byte(`["two"]`)) ||
			!jsonEqual([]byte(got["msgs/2026 11/ünïcode ✓"]), writes[0].value) {
			t.Fatalf("%s: batchGet: %+v", n.id, bg.KVs)
		}
	}

	// Every node reports the three members with their addresses and the
	// same single leader.
	leaderID := ""
	for _, n := range nodes {
		l := waitMembers(t, n.base(), nodes...)
		if leaderID != "" && l != leaderID {
			// An election between two reads is possible but unlikely; ask again.
			l = waitMembers(t, nodes[0].base(), nodes...)
		}
		leaderID = l
	}

	// Kill the leader with SIGKILL while a client keeps writing through
	// the two followers.
	old := nodeByID(t, leaderID, nodes)
	var survivors []*e2eNode
	for _, n := range nodes {
		if n != old {
			survivors = append(survivors, n)
		}
	}
	load := startLoad(ns, "load/ü", survivors)
	waitFor(t, 15*time.Second, "writes before the kill", func() bool { return load.acked() >= 5 })
	old.p.kill()
	newLeader := ""
	waitFor(t, 30*time.Second, "a new leader among "+survivors[0].id+" and "+survivors[1].id, func() bool {
		a, err1 := getCluster(survivors[0].base())
		b, err2 := getCluster(survivors[1].base())
		if err1 != nil || err2 != nil || a.LeaderID == "" || a.LeaderID == old.id || a.LeaderID != b.LeaderID {
			return false
		}
		newLeader = a.LeaderID
		return true
	})
	t.Logf("leader %s killed, %s leads", old.id, newLeader)
	before := load.acked()
	waitFor(t, 30*time.Second, "writes to succeed after the failover", func() bool { return load.acked() >= before+5 })
	loadWrites := load.stop()
	t.Logf("%d writes acknowledged across the failover, %d failed: %v", len(loadWrites), load.failed, load.errs)
	writes = append(writes, loadWrites...)
	for _, w := range writes {
		for _, n := range survivors {
			checkKey(t, n.base(), ns, w)
		}
	}
	// New writes through both survivors (one forwards to the new leader).
	newest := e2eKV{room, "after failover/ü 1", json.RawMessage(`{"leader was": "` + old.id + `"}`)}
	putKey(t, survivors[0].base(), ns, "after/failover ✓", "k", json.RawMessage(`1`))
	putKey(t, survivors[1].base(), ns, newest.obj, newest.key, newest.value)
	writes = append(writes, e2eKV{"after/failover ✓", "k", json.RawMessage(`1`)}, newest)
	for _, n := range survivors {
		checkKey(t, n.base(), ns, newest)
	}

	// Restart the killed node with the very same flags: it rejoins from
	// its data directory and catches up.
	old.start(t)
	waitFor(t, 30*time.Second, old.id+" to serve the newest write", func() bool {
		status, got, err := getKey(old.base(), ns, newest.obj, newest.key, "")
		return err == nil && status == http.StatusOK && got.Key == newest.key && jsonEqual(got.Value, newest.value)
	})
	waitAllReady(t, 30*time.Second, nodes...)
	for _, w := range writes {
		checkKey(t, old.base(), ns, w)
	}
	waitMembers(t, old.base(), nodes...)

	// Kill all three with SIGKILL and start them again, this time without
	// --initial-cluster: every acknowledged write survives.
	for _, n := range nodes {
		n.p.kill()
	}
	for _, n := range nodes {
		n.args = withoutFlag(n.args, "--initial-cluster")
		n.start(t)
	}
	waitAllReady(t, 30*time.Second, nodes...)
	for _, n := range nodes {
		waitMembers(t, n.base(), nodes...)
	}
	for _, w := range writes {
		for _, n := range nodes {
			checkKey(t, n.base(), ns, w)
		}
	}
	putKey(t, nodes[2].base(), ns, room, "after full restart", json.RawMessage(`{}`))
}

// withoutFlag returns args without flag and its value.
func withoutFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == flag {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// e2eLoad is a client writing keys one after another, round-robin through
// some nodes, recording which writes were acknowledged.
type e2eLoad struct {
	mu     sync.Mutex
	ok     []e2eKV
	failed int
	errs   map[string]int // distinct failures and how often
	quit   chan struct{}
	done   chan struct{}
}

// startLoad writes ns/obj keys 0000, 0001, ... through nodes until stop.
func startLoad(ns, obj string, nodes []*e2eNode) *e2eLoad {
	l := &e2eLoad{quit: make(chan struct{}), done: make(chan struct{}), errs: map[string]int{}}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.quit:
				return
			default:
			}
			kv := e2eKV{obj, fmt.Sprintf("k/%04d", i), json.RawMessage(fmt.Sprintf(`{"i": %d}`, i))}
			status, body, err := rest(http.MethodPut, keyURL(nodes[i%len(nodes)].base(), ns, kv.obj, kv.key),
				map[string]json.RawMessage{"value": kv.value})
			l.mu.Lock()
			if err == nil && status == http.StatusOK {
				l.ok = append(l.ok, kv)
			} else {
				l.failed++
				msg := fmt.Sprintf("HTTP %d %s", status, body)
				if err != nil {
					msg = err.Error()
				}
				l.errs[msg]++
			}
			failed := err != nil || status != http.StatusOK
			l.mu.Unlock()
			if failed {
				// A client's back-off between retries, so that a burst of
				// fast failures does not starve the nodes of CPU.
				select {
				case <-l.quit:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}()
	return l
}

func (l *e2eLoad) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ok)
}

// stop stops the writer and returns the acknowledged writes.
func (l *e2eLoad) stop() []e2eKV {
	close(l.quit)
	<-l.done
	return l.ok
}

// TestBootstrapAndJoin forms a cluster with --bootstrap and --join (the
// gRPC and the REST form), moves leadership and removes a member.
func TestBootstrapAndJoin(t *testing.T) {
	ports := freePorts(t, 9)
	n1 := newE2ENode(t, "n1", ports[0], ports[3], ports[6], "--bootstrap")
	n1.start(t)
	waitAllReady(t, 30*time.Second, n1)
	n2 := newE2ENode(t, "n2", ports[1], ports[4], ports[7], "--join", n1.grpc)
	n3 := newE2ENode(t, "n3", ports[2], ports[5], ports[8], "--join", "http://"+n1.httpAddr)
	n2.start(t)
	n3.start(t)
	nodes := []*e2eNode{n1, n2, n3}
	waitMembers(t, n1.base(), nodes...)
	waitAllReady(t, 30*time.Second, nodes...)
	for _, n := range nodes {
		waitMembers(t, n.base(), nodes...)
	}

	const ns = "joined"
	mustREST(t, http.MethodPut, nsURL(n2.base(), ns), map[string]any{}, nil)
	w := e2eKV{"obj/ä", "written on n3", json.RawMessage(`{"via": "n3"}`)}
	putKey(t, n3.base(), ns, w.obj, w.key, w.value)
	checkKey(t, n1.base(), ns, w)

	// Stop n2 gracefully (SIGINT) and start it again with the same --join
	// flag: it has state, so it rejoins instead of joining, and catches up
	// on a write made while it was down.
	n2.p.stop(t)
	if !n2.p.cmd.ProcessState.Success() {
		t.Fatalf("n2 exited with %v after SIGINT", n2.p.cmd.ProcessState)
	}
	wDown := e2eKV{"obj/ä", "while n2 was down", json.RawMessage(`"x"`)}
	putKey(t, n3.base(), ns, wDown.obj, wDown.key, wDown.value)
	n2.start(t)
	waitAllReady(t, 30*time.Second, n2)
	checkKey(t, n2.base(), ns, wDown)
	waitMembers(t, n2.base(), nodes...)

	// Move leadership to n2, asking n3 (a follower, which forwards).
	var tr struct {
		LeaderID string `json:"leader_id"`
	}
	oldLeader := waitMembers(t, n1.base(), nodes...)
	target := "n2"
	if oldLeader == "n2" {
		target = "n1"
	}
	mustREST(t, http.MethodPost, n3.base()+"/v1/cluster:transferLeadership", map[string]string{"id": target}, &tr)
	if tr.LeaderID != target {
		t.Fatalf("transferLeadership to %s: leader_id %q", target, tr.LeaderID)
	}
	for _, n := range nodes {
		waitFor(t, 15*time.Second, n.id+" to see leader "+target, func() bool {
			c, err := getCluster(n.base())
			return err == nil && c.LeaderID == target
		})
	}
	// And with no id: any other voter.
	mustREST(t, http.MethodPost, n1.base()+"/v1/cluster:transferLeadership", map[string]string{}, &tr)
	if tr.LeaderID == "" || tr.LeaderID == target {
		t.Fatalf("transferLeadership away from %s: leader_id %q", target, tr.LeaderID)
	}
	waitFor(t, 15*time.Second, "n1 to see leader "+tr.LeaderID, func() bool {
		c, err := getCluster(n1.base())
		return err == nil && c.LeaderID == tr.LeaderID
	})

	// Remove n3 (through whichever node; the leader is found). If n3
	// leads, hand leadership away first so the removal is of a follower.
	if tr.LeaderID == "n3" {
		mustREST(t, http.MethodPost, n2.base()+"/v1/cluster:transferLeadership", map[string]string{"id": "n1"}, &tr)
	}
	mustREST(t, http.MethodDelete, n2.base()+"/v1/cluster/members/n3", nil, nil)
	rest2 := []*e2eNode{n1, n2}
	for _, n := range rest2 {
		waitMembers(t, n.base(), rest2...)
	}
	// The removed node stops being ready once it no longer hears a leader.
	waitFor(t, 30*time.Second, "removed n3 to report not ready", func() bool {
		status, _, err := rest(http.MethodGet, n3.base()+"/readyz", nil)
		return err == nil && status == http.StatusServiceUnavailable
	})
	w2 := e2eKV{"obj/ä", "after removal", json.RawMessage(`[1, 2, 3]`)}
	putKey(t, n1.base(), ns, w2.obj, w2.key, w2.value)
	for _, n := range rest2 {
		checkKey(t, n.base(), ns, w)
		checkKey(t, n.base(), ns, w2)
	}
}

// runCairn runs the binary in dir to completion (at most 20 s) with env added to
// a CAIRN_*-free environment, and returns its exit error and output.
func runCairn(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cairnBin, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("cairn %v did not exit within 20 s (it should have refused its flags):\n%s", args, out)
	}
	return string(out), err
}

// TestServeFlagErrors checks what `cairn serve` refuses, and that its
// flags come from CAIRN_* environment variables.
func TestServeFlagErrors(t *testing.T) {
	ports := freePorts(t, 3)
	addrs := []string{
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--grpc-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[2]),
	}
	refused := []struct {
		name string
		args []string
		want []string // each must appear in the one error message
	}{
		{"no id and no data dir", nil, []string{"--id", "--data-dir"}},
		{"initial cluster without this node", []string{"--id", "n9", "--data-dir", "d", "--initial-cluster", "n1=127.0.0.1:1,n2=127.0.0.1:2"},
			[]string{"--initial-cluster", `"n9"`}},
		{"bootstrap and join", []string{"--id", "n1", "--data-dir", "d", "--bootstrap", "--join", "127.0.0.1:1"},
			[]string{"--bootstrap", "--join"}},
		{"bad log level", []string{"--id", "n1", "--data-dir", "d", "--log-level", "loud", "--insecure-no-auth"}, []string{"--log-level"}},
		{"no authentication", []string{"--id", "n1", "--data-dir", "d"}, []string{"--insecure-no-auth", "--auth-secret-file"}},
	}
	work := t.TempDir()
	for _, c := range refused {
		args := append(append([]string{"serve"}, addrs...), c.args...)
		out, err := runCairn(t, work, nil, args...)
		if err == nil {
			t.Errorf("%s: cairn %v exited 0:\n%s", c.name, args, out)
			continue
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() <= 0 {
			t.Errorf("%s: cairn %v: %v, want a non-zero exit", c.name, args, err)
		}
		// One message: the "cairn:" line and what follows it.
		i := strings.Index(out, "cairn: ")
		if i < 0 {
			t.Errorf("%s: no \"cairn: \" error message in:\n%s", c.name, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(out[i:], w) {
				t.Errorf("%s: error message does not name %s:\n%s", c.name, w, out)
			}
		}
	}
	// The data directory must not have been created by a refused start.
	if _, err := os.Stat(filepath.Join(work, "d")); err == nil {
		t.Errorf("a refused start created ./d")
	}

	// CAIRN_ID and CAIRN_DATA_DIR stand in for --id and --data-dir.
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "env-data")
	n := &e2eNode{id: "envnode", dir: dir, raft: addrs[1], grpc: addrs[3], httpAddr: addrs[5]}
	n.env = []string{"CAIRN_ID=envnode", "CAIRN_DATA_DIR=" + dataDir, "CAIRN_LOG_LEVEL=warn", "CAIRN_INSECURE_NO_AUTH=true"}
	n.args = append(append([]string{"serve"}, addrs...), "--bootstrap")
	n.start(t)
	waitAllReady(t, 30*time.Second, n)
	waitMembers(t, n.base(), n)
	if _, err := os.Stat(filepath.Join(dataDir, "fsm", "state.db")); err != nil {
		t.Errorf("CAIRN_DATA_DIR: no state under %s: %v", dataDir, err)
	}
	mustREST(t, http.MethodPut, nsURL(n.base(), "env"), map[string]any{}, nil)
	w := e2eKV{"o", "k", json.RawMessage(`"v"`)}
	putKey(t, n.base(), "env", w.obj, w.key, w.value)
	checkKey(t, n.base(), "env", w)
}

// freePortBase returns a port p with p, p+1 and p+2 all free on loopback,
// avoiding the ports in avoid and those of `cairn dev`'s defaults.
func freePortBase(t *testing.T, avoid map[int]bool) int {
	t.Helper()
	for attempt := 0; attempt < 50; attempt++ {
		p := freePorts(t, 1)[0]
		if p+2 > 65535 || (p+2 >= 7300 && p <= 7503) {
			continue
		}
		var ls []net.Listener
		ok := true
		for i := 0; i < 3 && ok; i++ {
			if avoid[p+i] {
				ok = false
				break
			}
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			_ = l.Close()
		}
		if ok {
			for i := 0; i < 3; i++ {
				avoid[p+i] = true
			}
			return p
		}
	}
	t.Fatal("found no three consecutive free ports")
	return 0
}

// TestDevRestartKeepsData runs `cairn dev` on a data directory, writes,
// stops it with SIGINT, starts it again and reads the write back.
func TestDevRestartKeepsData(t *testing.T) {
	avoid := map[int]bool{}
	httpPort, grpcPort, raftPort := freePortBase(t, avoid), freePortBase(t, avoid), freePortBase(t, avoid)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "dev-data")
	args := []string{"dev", "--data-dir", dataDir, "--log-level", "warn",
		"--http-port", strconv.Itoa(httpPort), "--grpc-port", strconv.Itoa(grpcPort), "--raft-port", strconv.Itoa(raftPort)}
	base := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", httpPort+i) }

	dev := startCairn(t, dir, args...)
	waitFor(t, 60*time.Second, "cairn dev to print its addresses", func() bool {
		return strings.Contains(dev.out.String(), "Press Ctrl-C")
	})
	if out := dev.out.String(); !strings.Contains(out, base(0)) || !strings.Contains(out, base(2)) {
		t.Fatalf("cairn dev does not print its REST addresses %s..%s:\n%s", base(0), base(2), out)
	}
	// dev has authentication on: send the admin token it printed, this
	// one also after the restart (the secret is kept in the data dir).
	tok := regexp.MustCompile(`export CAIRN_TOKEN=(\S+)`).FindStringSubmatch(dev.out.String())
	if tok == nil {
		t.Fatalf("cairn dev printed no admin token:\n%s", dev.out.String())
	}
	if status, body, err := rest(http.MethodGet, base(0)+"/v1/namespaces", nil); err != nil || status != http.StatusUnauthorized {
		t.Fatalf("cairn dev answered a call without a token: %d %s %v", status, body, err)
	}
	for i := 0; i < 3; i++ {
		host := strings.TrimPrefix(base(i), "http://")
		e2eTokens.Store(host, tok[1])
		t.Cleanup(func() { e2eTokens.Delete(host) })
	}
	mustREST(t, http.MethodPut, nsURL(base(0), "dev"), map[string]any{}, nil)
	w := e2eKV{"room/ü 1", "msgs/0001 ✓", json.RawMessage(`{"text": "kept across restarts"}`)}
	putKey(t, base(1), "dev", w.obj, w.key, w.value)
	checkKey(t, base(2), "dev", w)
	dev.stop(t)
	if !dev.cmd.ProcessState.Success() {
		t.Fatalf("cairn dev exited with %v after SIGINT:\n%s", dev.cmd.ProcessState, dev.out.String())
	}

	dev2 := startCairn(t, dir, args...)
	waitFor(t, 60*time.Second, "the restarted cairn dev to print its addresses", func() bool {
		return strings.Contains(dev2.out.String(), "Press Ctrl-C")
	})
	for i := 0; i < 3; i++ {
		checkKey(t, base(i), "dev", w)
	}
	dev2.stop(t)
}

// TestVersion checks `cairn version` names the program, its commit and
// every format this build reads and writes, with this build's versions.
func TestVersion(t *testing.T) {
	out, err := runCairn(t, t.TempDir(), nil, "version")
	if err != nil {
		t.Fatalf("cairn version: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`^cairn \S+ \(commit \S+, go\S+\)\n`).MatchString(out) {
		t.Errorf("cairn version does not start with the version, commit and Go version:\n%s", out)
	}
	var types []string
	for _, typ := range fsm.CommandTypes() {
		types = append(types, strconv.Itoa(int(typ)))
	}
	for _, want := range []string{
		"command envelope +version " + strconv.Itoa(fsm.CommandVersion),
		"command types +" + strings.Join(types, " "),
		"state database +format " + strconv.Itoa(fsm.StorageVersion),
		"snapshot stream +format " + strconv.Itoa(fsm.SnapshotVersion),
		"backup file +format " + strconv.Itoa(fsm.BackupVersion),
		"raft port stream kinds +0xCA raft, 0xCB peer API, 0xCC probe",
		"raft protocol +hashicorp/raft protocol 3, snapshot version 1",
		"raft log +format " + strconv.Itoa(wal.FormatVersion),
		"peer API +cairn.peer.v1.PeerService",
		"client API +cairn.v1",
	} {
		if !regexp.MustCompile(`(?m)^  ` + want + `$`).MatchString(out) {
			t.Errorf("cairn version lacks a line %q:\n%s", want, out)
		}
	}
}

// newThreeNodes describes nodes n1..n3 on free ports, formed with
// --initial-cluster, without starting them; it returns them and that
// flag's value. flags, when set, gives extra flags for node i (0-based).
func newThreeNodes(t *testing.T, flags func(i int) []string) ([]*e2eNode, string) {
	t.Helper()
	ports := freePorts(t, 9)
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("n%d=127.0.0.1:%d", i+1, ports[i]))
	}
	cluster := strings.Join(initial, ",")
	var nodes []*e2eNode
	for i := range 3 {
		args := []string{"--initial-cluster", cluster}
		if flags != nil {
			args = append(args, flags(i)...)
		}
		nodes = append(nodes, newE2ENode(t, fmt.Sprintf("n%d", i+1), ports[i], ports[3+i], ports[6+i], args...))
	}
	return nodes, cluster
}
