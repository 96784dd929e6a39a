package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCLIBackup saves a backup from one `cairn dev` cluster while it is
// serving, refuses corrupted and truncated files without touching the
// target, restores it into a second running `cairn dev` cluster, and seeds
// a third cluster of `cairn serve` processes from it offline.
func TestCLIBackup(t *testing.T) {
	avoid := map[int]bool{}
	dir := t.TempDir()
	startDev := func(name string) []string {
		httpPort, grpcPort, raftPort := freePortBase(t, avoid), freePortBase(t, avoid), freePortBase(t, avoid)
		dev := startCairn(t, dir, "dev", "--data-dir", filepath.Join(dir, name), "--log-level", "warn",
			"--http-port", strconv.Itoa(httpPort), "--grpc-port", strconv.Itoa(grpcPort), "--raft-port", strconv.Itoa(raftPort))
		waitFor(t, 60*time.Second, "cairn dev "+name+" to start", func() bool { return strings.Contains(dev.out.String(), "Press Ctrl-C") })
		env := []string{fmt.Sprintf("CAIRN_ENDPOINTS=127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", grpcPort, grpcPort+1, grpcPort+2)}
		if tok := regexp.MustCompile(`export CAIRN_TOKEN=(\S+)`).FindStringSubmatch(dev.out.String()); tok != nil {
			env = append(env, "CAIRN_TOKEN="+tok[1])
		}
		return env
	}
	run := func(env []string, args ...string) string {
		t.Helper()
		out, err := runCairn(t, dir, env, args...)
		if err != nil {
			t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	fail := func(env []string, wantInMsg string, args ...string) {
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
	contains := func(out string, parts ...string) {
		t.Helper()
		for _, p := range parts {
			if !strings.Contains(out, p) {
				t.Fatalf("output lacks %q:\n%s", p, out)
			}
		}
	}

	src := startDev("src")
	run(src, "ns", "create", "chat")
	run(src, "kv", "put", "chat", "room-1", "msgs/1", `{"text":"hi"}`)
	run(src, "kv", "put", "chat", "room-1", "msgs/2", `{"text":"there"}`)
	backup := filepath.Join(dir, "backup.cairn")
	out := run(src, "backup", "save", backup)
	contains(out, "saved "+backup, "index ")
	if strings.Contains(out, "\r") {
		t.Fatalf("progress shown when stdout is not a terminal: %q", out)
	}
	if _, err := os.Stat(backup + ".partial"); !os.IsNotExist(err) {
		t.Fatalf("%s.partial left behind (%v)", backup, err)
	}
	run(src, "kv", "put", "chat", "room-1", "msgs/3", `{"text":"after the backup"}`)

	dst := startDev("dst")
	run(dst, "ns", "create", "other")
	run(dst, "kv", "put", "other", "o", "k", `1`)

	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.cairn")
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0x01
	writeFile(t, bad, string(flipped))
	fail(dst, "SHA-256 mismatch", "backup", "restore", bad)
	writeFile(t, bad, string(data[:len(data)-7]))
	fail(dst, "bad backup file", "backup", "restore", bad)
	contains(run(dst, "kv", "get", "other", "o", "k"), "1") // nothing was replaced

	contains(run(dst, "backup", "restore", backup), "restored "+backup, "revision")
	// Through each node alone: followers forward the upload to the leader
	// (with the caller's token, over the nodes' mutual TLS).
	for _, ep := range strings.Split(strings.TrimPrefix(dst[0], "CAIRN_ENDPOINTS="), ",") {
		contains(run(append(slices.Clone(dst), "CAIRN_ENDPOINTS="+ep), "backup", "restore", backup), "restored "+backup)
	}
	contains(run(dst, "kv", "get", "chat", "room-1", "msgs/1"), "hi")
	contains(run(dst, "kv", "get", "chat", "room-1", "msgs/2"), "there")
	fail(dst, "not found", "kv", "get", "chat", "room-1", "msgs/3")
	fail(dst, "not found", "kv", "get", "other", "o", "k")
	run(dst, "kv", "put", "chat", "room-1", "msgs/3", `{"text":"written after the restore"}`)

	// Offline: seed a brand-new three-node cluster from the file.
	nodes, initial := newThreeNodes(t, nil)
	var endpoints []string
	for _, n := range nodes {
		fail(nil, "bad backup file", "backup", "restore", bad, "--data-dir", filepath.Join(n.dir, "data"), "--id", n.id, "--initial-cluster", initial)
		contains(run(nil, "backup", "restore", backup, "--data-dir", filepath.Join(n.dir, "data"), "--id", n.id, "--initial-cluster", initial),
			"seeded "+filepath.Join(n.dir, "data"))
		endpoints = append(endpoints, n.grpc)
	}
	for _, n := range nodes {
		n.start(t)
	}
	waitAllReady(t, 30*time.Second, nodes...)
	env := []string{"CAIRN_ENDPOINTS=" + strings.Join(endpoints, ",")}
	contains(run(env, "kv", "get", "chat", "room-1", "msgs/1"), "hi")
	fail(env, "not found", "kv", "get", "chat", "room-1", "msgs/3")
	run(env, "kv", "put", "chat", "room-1", "msgs/3", `{"text":"on the new cluster"}`)
}
