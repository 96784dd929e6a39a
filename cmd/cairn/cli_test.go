package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCLI drives every client command of the binary against a real
// three-node cluster (`cairn dev` on free ports), in table and JSON form,
// and checks errors print one line and exit non-zero.
func TestCLI(t *testing.T) {
	dir, env := startDevForCLI(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := runCairn(t, dir, env, args...)
		if err != nil {
			t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	fail := func(wantInMsg string, args ...string) {
		t.Helper()
		out, err := runCairn(t, dir, env, args...)
		var exit *exec.ExitError
		if err == nil || !errorsAs(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("cairn %s: exit %v, want a failure\n%s", strings.Join(args, " "), err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "cairn: ") || !strings.Contains(lines[0], wantInMsg) {
			t.Fatalf("cairn %s: error output %q, want one line starting with \"cairn: \" naming %q", strings.Join(args, " "), out, wantInMsg)
		}
	}
	jsonLine := func(out string, v any) {
		t.Helper()
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), v); err != nil {
			t.Fatalf("not one JSON document: %q: %v", out, err)
		}
	}
	contains := func(out string, parts ...string) {
		t.Helper()
		for _, p := range parts {
			if !strings.Contains(out, p) {
				t.Fatalf("output lacks %q:\n%s", p, out)
			}
		}
	}

	contains(run("ns", "create", "chat", "--max-object-bytes", "100000"), "NAMESPACE", "chat", "100000")
	contains(run("ns", "list"), "chat")
	var ns map[string]any
	jsonLine(run("ns", "info", "chat", "-o", "json"), &ns)
	if ns["name"] != "chat" {
		t.Fatalf("ns info json: %v", ns)
	}

	contains(run("kv", "put", "chat", "room-1", "msgs/1", `{"text":"hi"}`), "REVISION", "true")
	run("kv", "put", "chat", "room-1", "topic", "hello")
	var put map[string]any
	jsonLine(run("kv", "put", "chat", "room 2/é", "k", "[1,2]", "-o", "json", "--request-id", "r-1"), &put)
	var again map[string]any
	jsonLine(run("kv", "put", "chat", "room 2/é", "k", "[1,2]", "-o", "json", "--request-id", "r-1"), &again)
	if again["replayed"] != true || again["revision"] != put["revision"] {
		t.Fatalf("retry with the same request id: %v, first %v", again, put)
	}
	contains(run("kv", "get", "chat", "room-1", "msgs/1"), `{"text":"hi"}`, "MOD_REV")
	var kv map[string]any
	jsonLine(run("kv", "get", "chat", "room-1", "topic", "-o", "json", "--serializable"), &kv)
	if kv["value"] != "hello" || kv["key"] != "topic" {
		t.Fatalf("kv get json: %v", kv)
	}
	contains(run("kv", "list", "chat", "room-1", "--prefix", "msgs/"), "msgs/1")
	listed := run("kv", "list", "chat", "room-1", "-o", "json")
	if n := len(strings.Split(strings.TrimSpace(listed), "\n")); n != 2 {
		t.Fatalf("kv list json: %d lines, want one per key:\n%s", n, listed)
	}
	rev := uint64(kv["mod_revision"].(float64))
	fail("mod_revision", "kv", "put", "chat", "room-1", "topic", "x", "--if-mod-revision", fmt.Sprint(rev+100))
	run("kv", "put", "chat", "room-1", "topic", "x", "--if-mod-revision", fmt.Sprint(rev))

	txn := `{"compares": [{"object": "room-1", "key": "topic", "value": "x"}], "success": [{"put": {"object": "room-1", "key": "topic", "value": "y"}}]}`
	txnFile := filepath.Join(dir, "txn.json")
	writeFile(t, txnFile, txn)
	contains(run("kv", "txn", "chat", txnFile), "true", "success")
	var txnOut map[string]any
	jsonLine(run("kv", "txn", "chat", txnFile, "-o", "json"), &txnOut)
	if txnOut["succeeded"] != false {
		t.Fatalf("second txn should take the failure branch: %v", txnOut)
	}

	contains(run("alarm", "set", "chat", "room-1", "--in", "1h", "--payload", "wake"), "PENDING", "default")
	contains(run("alarm", "set", "chat", "room-1", "poll", "--at", "2099-01-01T00:00:00Z", "--every", "1h"), "poll", "2099-01-01", "1h0m0s")
	var alarm map[string]any
	jsonLine(run("alarm", "get", "chat", "room-1", "poll", "-o", "json"), &alarm)
	if alarm["name"] != "poll" || alarm["state"] != "ALARM_STATE_PENDING" {
		t.Fatalf("alarm get json: %v", alarm)
	}
	contains(run("alarm", "list", "chat", "--state", "pending"), "default", "poll")
	contains(run("alarm", "del", "chat", "room-1"), "true")
	fail("not found", "alarm", "get", "chat", "room-1")
	fail("--at", "alarm", "set", "chat", "room-1", "--at", "tomorrow")

	contains(run("obj", "list", "chat"), "room-1", "room 2/é", "SHARD")
	var obj map[string]any
	jsonLine(run("obj", "info", "chat", "room-1", "-o", "json"), &obj)
	if obj["key_count"] != "2" {
		t.Fatalf("obj info json: %v", obj)
	}

	// watch follows: from the revision of a write made just before it.
	var p2 map[string]any
	jsonLine(run("kv", "put", "chat", "room-1", "msgs/2", `"yo"`, "-o", "json"), &p2)
	w := startCairnEnv(t, dir, env, "watch", "chat", "room-1", "--start-revision", fmt.Sprint(uint64(p2["revision"].(float64))))
	waitFor(t, 20*time.Second, "the watch to print the change", func() bool { return strings.Contains(w.out.String(), `msgs/2`) })
	contains(w.out.String(), "PUT", "room-1", `"yo"`)
	w.kill()

	contains(run("cluster", "status"), "Leader", "Follower", "healthy", "COMMIT/APPLIED")
	var members []map[string]any
	jsonLine(run("cluster", "status", "-o", "json"), &members)
	if len(members) != 3 {
		t.Fatalf("cluster status json: %v", members)
	}
	contains(run("cluster", "transfer-leader"), "leader is now")
	contains(run("cluster", "snapshot"), "SNAPSHOT_INDEX", "n1", "n2", "n3")
	contains(run("cluster", "hash"), "APPLIED_INDEX", "HASH", "n1", "n2", "n3")
	waitFor(t, 20*time.Second, "every member to show the same hash at the same applied index", func() bool {
		var hashes []struct {
			ID    string `json:"id"`
			Index uint64 `json:"index"`
			Hash  string `json:"hash"`
		}
		jsonLine(run("cluster", "hash", "-o", "json"), &hashes)
		for _, h := range hashes {
			if len(h.Hash) != 64 || h.Index != hashes[0].Index || h.Hash != hashes[0].Hash {
				return false
			}
		}
		return len(hashes) == 3
	})

	contains(run("obj", "delete", "chat", "room-1"), "DELETED_KEYS")
	fail("not found", "kv", "get", "chat", "room-1", "msgs/1")
	fail("not empty", "ns", "delete", "chat")
	contains(run("ns", "delete", "chat", "--force"), "chat")
	fail("--output", "ns", "list", "-o", "yaml")
	fail("arg", "kv", "get", "chat")
	for _, c := range []string{"kv put", "kv get", "kv del", "kv list", "kv txn", "ns create", "ns list", "ns info", "ns delete",
		"obj list", "obj info", "obj delete", "alarm set", "alarm get", "alarm del", "alarm list", "watch", "cluster status", "cluster add", "cluster remove", "cluster transfer-leader", "cluster snapshot", "cluster hash"} {
		help := run(append(strings.Fields(c), "--help")...)
		if !strings.Contains(help, "Examples:") {
			t.Errorf("cairn %s --help has no example", c)
		}
	}
}

// startDevForCLI starts `cairn dev` on free ports and returns its
// directory and the environment that points client commands at it
// (CAIRN_ENDPOINTS, and CAIRN_TOKEN with the admin token it printed).
func startDevForCLI(t *testing.T) (dir string, env []string) {
	t.Helper()
	avoid := map[int]bool{}
	httpPort, grpcPort, raftPort := freePortBase(t, avoid), freePortBase(t, avoid), freePortBase(t, avoid)
	dir = t.TempDir()
	dev := startCairn(t, dir, "dev", "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn",
		"--http-port", strconv.Itoa(httpPort), "--grpc-port", strconv.Itoa(grpcPort), "--raft-port", strconv.Itoa(raftPort))
	waitFor(t, 60*time.Second, "cairn dev to start", func() bool { return strings.Contains(dev.out.String(), "Press Ctrl-C") })
	env = []string{fmt.Sprintf("CAIRN_ENDPOINTS=127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", grpcPort, grpcPort+1, grpcPort+2)}
	if tok := regexp.MustCompile(`export CAIRN_TOKEN=(\S+)`).FindStringSubmatch(dev.out.String()); tok != nil {
		env = append(env, "CAIRN_TOKEN="+tok[1])
	}
	return dir, env
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCLIHintsAtRESTAddress: a command given a REST address where it wants
// a gRPC one says so, where grpc-go's own message speaks of frames.
func TestCLIHintsAtRESTAddress(t *testing.T) {
	rest := httptest.NewServer(http.NotFoundHandler())
	defer rest.Close()
	addr := strings.TrimPrefix(rest.URL, "http://")
	for _, args := range [][]string{
		{"kv", "get", "--endpoints", addr, "--timeout", "1s", "ns", "o", "k"},
		{"bench", "put", "--endpoints", addr, "--timeout", "1s", "--duration", "1s"},
	} {
		out, err := runCairn(t, t.TempDir(), nil, args...)
		var exit *exec.ExitError
		if !errorsAs(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("cairn %s: %v, want exit status 1\n%s", strings.Join(args, " "), err, out)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 ||
			!strings.Contains(out, "--endpoints (CAIRN_ENDPOINTS) takes the nodes' gRPC addresses") {
			t.Errorf("cairn %s: %q, want one line with the hint", strings.Join(args, " "), out)
		}
	}
}
