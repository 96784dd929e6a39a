package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairndb/cairn/raftnode"
)

// TestServeConfigFile: `cairn serve --config FILE` takes its settings
// from the file, the command line wins over it, logs can be JSON, pprof is
// served on the opt-in admin listener, and a bad file is refused with the
// line it failed on.
func TestServeConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := freePorts(t, 4)
	cfg := filepath.Join(dir, "cairn.conf")
	writeFile(t, cfg, fmt.Sprintf(`# one node, from a file
id = c1
data-dir = %s
raft-addr = 127.0.0.1:%d
grpc-addr: 127.0.0.1:%d
http-addr = "127.0.0.1:%d"
bootstrap = true
insecure-no-auth = true
log-level = debug
log-format = json
`, filepath.Join(dir, "data"), p[0], p[1], p[2]))
	admin := fmt.Sprintf("127.0.0.1:%d", p[3])
	proc := startCairnEnv(t, dir, nil, "serve", "--config", cfg, "--log-level", "info", "--admin-addr", admin)
	base := fmt.Sprintf("http://127.0.0.1:%d", p[2])
	waitFor(t, 30*time.Second, "the node configured by file to be ready", func() bool { return httpOK(base + "/readyz") })
	if !httpOK("http://" + admin + "/debug/pprof/") {
		t.Fatalf("no pprof on the admin listener %s", admin)
	}
	out := proc.out.String()
	if !strings.Contains(out, `{"time":`) || !strings.Contains(out, `"msg":"cairn node serving"`) {
		t.Fatalf("logs are not JSON:\n%s", out)
	}
	if strings.Contains(out, `"level":"DEBUG"`) {
		t.Fatalf("--log-level info on the command line did not win over the file's debug:\n%s", out)
	}
	proc.stop(t)

	bad := filepath.Join(dir, "bad.conf")
	writeFile(t, bad, "id = c2\nno-such-setting = 1\n")
	msg, err := runCairn(t, dir, nil, "serve", "--config", bad)
	if err == nil || !strings.Contains(msg, "bad.conf:2") || !strings.Contains(msg, "no-such-setting") {
		t.Fatalf("a bad config file: %v\n%s", err, msg)
	}
	if resp, err := http.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("the node still answers after SIGINT")
	}
}

// TestServeSnapshotFlags: --snapshot-threshold, --snapshot-interval and
// --trailing-logs reach the Raft configuration, and default to raftnode's
// defaults.
func TestServeSnapshotFlags(t *testing.T) {
	f := serveFlags{id: "n1", dataDir: t.TempDir(), raftAddr: "127.0.0.1:1", grpcAddr: "127.0.0.1:2", httpAddr: "127.0.0.1:3",
		logLevel: "warn", logFormat: "text", snapshotThreshold: 64, snapshotInterval: time.Second, trailingLogs: 16}
	f.sec.insecureNoAuth = true
	cfg, err := f.nodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Raft; r.SnapshotThreshold != 64 || r.SnapshotInterval != time.Second || r.TrailingLogs != 16 {
		t.Fatalf("raft config: threshold %d interval %v trailing %d, want 64 1s 16", r.SnapshotThreshold, r.SnapshotInterval, r.TrailingLogs)
	}
	d := raftnode.DefaultConfig()
	fl := newServeCmd().Flags()
	for name, want := range map[string]string{"snapshot-threshold": fmt.Sprint(d.SnapshotThreshold),
		"snapshot-interval": d.SnapshotInterval.String(), "trailing-logs": fmt.Sprint(d.TrailingLogs)} {
		if got := fl.Lookup(name).DefValue; got != want {
			t.Errorf("--%s defaults to %s, want raftnode's %s", name, got, want)
		}
	}
}
