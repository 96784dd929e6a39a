package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

// upgradeFrom is the commit of the previous release, the one
// TestRollingUpgrade upgrades from. Move it forward when a release is
// made, so that every release is tested against the one before it.
const upgradeFrom = "5b69f51"

// buildCairnAt builds the cairn binary of commit from this repository's
// history and returns its path. The commit's files are unpacked once into
// a directory named after it (a cache shared by test runs: moved into
// place whole, so a run sees it complete or not at all); building from
// the same directory each time lets the Go build cache serve every run
// after the first, and the dependencies are those this build already
// compiled.
func buildCairnAt(t *testing.T, commit string) string {
	t.Helper()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("building cairn at commit %s needs this repository's git history, and git found no repository here: %v", commit, err)
	}
	root := strings.TrimSpace(string(top))
	full, err := exec.Command("git", "-C", root, "rev-parse", "--verify", "--quiet", commit+"^{commit}").Output()
	if err != nil {
		t.Fatalf("this clone lacks commit %s, the release the rolling upgrade starts from (a shallow clone? `git fetch --unshallow` fetches the history): %v",
			commit, err)
	}
	src := filepath.Join(os.TempDir(), "cairn-src-"+strings.TrimSpace(string(full)))
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		unpackCommit(t, root, commit, src)
	}
	bin := filepath.Join(t.TempDir(), "cairn-"+commit)
	build := exec.Command("go", "build", "-o", bin, "./cmd/cairn")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building cairn at commit %s: %v\n%s", commit, err, out)
	}
	return bin
}

// unpackCommit writes the files of commit into dir, which must not exist:
// into a fresh directory first, then renamed to dir. When another test run
// got there first, its copy is used.
func unpackCommit(t *testing.T, root, commit, dir string) {
	t.Helper()
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", commit)
	untar := exec.Command("tar", "-x", "-C", tmp)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	archive.Stderr, untar.Stdin, untar.Stderr = &stderr, pipe, &stderr
	if err := untar.Start(); err != nil {
		t.Fatalf("tar: %v", err)
	}
	if err := archive.Run(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", commit, err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("unpacking commit %s: %v\n%s", commit, err, stderr.String())
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "go.mod")); statErr != nil {
			t.Fatalf("unpacking commit %s into %s: %v", commit, dir, err)
		}
	}
}

// TestRollingUpgrade runs a cluster of the previous release (upgradeFrom)
// under four writing clients and replaces its nodes one at a time with
// this build, on the same data directories: first a follower (the new
// release follows an old leader and forwards writes to it), then, after
// leadership moves to that node, the other two (old nodes apply what a
// new leader proposes). Writes go on the whole time and keep being
// acknowledged in every mixed phase; in the end no acknowledged write is
// lost and all three nodes hold the same state hash at the same applied
// index. The old release has no state-hash RPC, so hashes are compared
// once every node runs this build.
func TestRollingUpgrade(t *testing.T) {
	oldBin := buildCairnAt(t, upgradeFrom)
	nodes, endpoints := startThreeNodes(t, oldBin)
	const ns = "upgrade"
	mustREST(t, http.MethodPut, nsURL(nodes[0].base(), ns), map[string]any{}, nil)
	leader := nodeByID(t, waitMembers(t, nodes[0].base(), nodes...), nodes)
	var followers []*e2eNode
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}

	load := startClientLoad(t, ns, 4, endpoints)
	load.waitProgress(t, 100, "on the old release")
	var stopped []*e2eNode // the old release's processes, for their logs
	upgrade := func(n *e2eNode) {
		t.Helper()
		stopped = append(stopped, &e2eNode{id: n.id + " (old release)", p: n.p})
		if err := n.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := exitCode(t, n.p, "SIGTERM to "+n.id+" of the old release"); code != 0 {
			t.Fatalf("%s of the old release exited with status %d\n%s", n.id, code, n.p.out.String())
		}
		// The old release kept Raft's log in raft.db; this one migrates it
		// to raft/wal when it starts.
		raftDir := filepath.Join(n.dir, "data", "raft")
		if _, err := os.Stat(filepath.Join(raftDir, "raft.db")); err != nil {
			t.Fatalf("%s of the old release left no raft.db: %v", n.id, err)
		}
		n.bin = ""
		n.start(t)
		waitAllReady(t, 60*time.Second, nodes...)
		if _, err := os.Stat(filepath.Join(raftDir, "raft.db")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still has raft.db after its upgrade: %v", n.id, err)
		}
		if _, err := os.Stat(filepath.Join(raftDir, "wal", "stable")); err != nil {
			t.Fatalf("%s has no migrated log store: %v", n.id, err)
		}
		load.waitProgress(t, 100, "after upgrading "+n.id)
	}

	upgrade(followers[0])
	mustREST(t, http.MethodPost, nodes[0].base()+"/v1/cluster:transferLeadership", map[string]any{"id": followers[0].id}, nil)
	for _, n := range nodes {
		waitForDetail(t, 30*time.Second, n.id+" names the upgraded node as leader", func() (bool, string) {
			c, err := getCluster(n.base())
			return err == nil && c.LeaderID == followers[0].id, fmt.Sprintf("%+v %v", c, err)
		})
	}
	load.waitProgress(t, 100, "under a leader of the new release")
	upgrade(followers[1])
	upgrade(leader)

	acked, failed := load.stop()
	for _, err := range failed {
		t.Errorf("a put failed: %v", err)
	}
	checkAcked(t, ns, endpoints, acked)

	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var index uint64
	waitForDetail(t, 30*time.Second, "every node's state hash at the same applied index", func() (bool, string) {
		var hashes [][]byte
		var indexes []uint64
		for i := range endpoints {
			h, idx, err := c.StateHashOf(context.Background(), i)
			if err != nil {
				return false, err.Error()
			}
			hashes, indexes = append(hashes, h), append(indexes, idx)
		}
		detail := fmt.Sprintf("applied indexes %v, hashes %x", indexes, hashes)
		if indexes[0] != indexes[1] || indexes[0] != indexes[2] {
			return false, detail
		}
		if !bytes.Equal(hashes[0], hashes[1]) || !bytes.Equal(hashes[0], hashes[2]) {
			t.Fatalf("state hashes differ at the same applied index: %s", detail)
		}
		index = indexes[0]
		return true, detail
	})
	for _, n := range append(stopped, nodes...) {
		if out := n.p.out.String(); strings.Contains(out, "panic") {
			t.Errorf("%s logged a panic:\n%s", n.id, out)
		}
	}
	t.Logf("%d puts acknowledged through the upgrade from %s; equal state hashes at applied index %d", len(acked), upgradeFrom, index)
}
