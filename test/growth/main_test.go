package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestGrowthRun runs the whole measurement on a small state, so the tool
// keeps working: the built state is seeded into three nodes, benched,
// restarted, and installed on a new node by snapshot. The figures at this
// size mean nothing; that every step completes does.
func TestGrowthRun(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cairn")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/cairn").CombinedOutput(); err != nil {
		t.Fatalf("building cairn: %v\n%s", err, out)
	}
	defer stopAll()
	res, err := run(config{cairn: bin, dir: t.TempDir(), keys: 20_000, objects: 2_000, baseKeys: 1_000,
		valueSize: 64, clients: 4, duration: 500 * time.Millisecond, warmup: 100 * time.Millisecond, port: freeBase(t)})
	if err != nil {
		t.Fatal(err)
	}
	var grown struct {
		Ops    int `json:"ops"`
		Errors int `json:"errors"`
		Keys   int `json:"keys"`
	}
	if err := json.Unmarshal(res.Grown, &grown); err != nil || grown.Ops == 0 || grown.Errors != 0 || grown.Keys != 20_000 {
		t.Fatalf("bench on the grown state: %s (%v)", res.Grown, err)
	}
	if len(res.RSS) != 3 || res.RSS[0].RSS == 0 || res.BackupBytes < 20_000*64 {
		t.Fatalf("results: %+v", res)
	}
}

// freeBase finds a base port whose range (base+1 to base+32, both
// clusters) is free now.
func freeBase(t *testing.T) int {
	t.Helper()
	for base := 22000 + 100*(os.Getpid()%80); base < 32000; base += 37 {
		var ls []net.Listener
		ok := true
		for p := base + 1; p <= base+32 && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
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
			return base
		}
	}
	t.Fatal("no free range of 32 ports")
	return 0
}
