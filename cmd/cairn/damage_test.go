package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// damageKeys is how many keys stoppedNode writes: 50 before its snapshot,
// the rest after (so a rebuild needs the snapshot and the log).
const damageKeys = 60

// stoppedNode runs a one-node cluster of the real binary, writes
// damageKeys keys with a snapshot after the 50th, stops it with SIGINT and
// returns its node; its data lives in n.dir/data.
func stoppedNode(t *testing.T) *e2eNode {
	t.Helper()
	ports := freePorts(t, 3)
	n := newE2ENode(t, "n1", ports[0], ports[1], ports[2], "--bootstrap")
	n.start(t)
	waitAllReady(t, 30*time.Second, n)
	mustREST(t, http.MethodPut, nsURL(n.base(), "d"), map[string]any{}, nil)
	for i := range damageKeys {
		if i == 50 {
			mustREST(t, http.MethodPost, n.base()+"/v1/cluster:snapshot", map[string]any{}, nil)
		}
		putKey(t, n.base(), "d", "o", fmt.Sprintf("k%02d", i), json.RawMessage(fmt.Sprint(i)))
	}
	n.p.stop(t)
	n.args = withoutFlag(n.args, "--bootstrap")
	n.args = append(n.args, "--log-level", "info")
	return n
}

// flipByte inverts the byte at off of the file at path.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// boltRootPage returns the offset of the root bucket's page of the bbolt
// file at path, from the meta page with the higher transaction id (bbolt's
// meta: after a 16-byte page header, magic, version, page size, flags, root
// page id, sequence, free list, page count, transaction id).
func boltRootPage(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	pageSize := int64(le.Uint32(b[16+8:]))
	meta := func(i int64) (root, txid uint64) {
		m := b[i*pageSize+16:]
		return le.Uint64(m[16:]), le.Uint64(m[48:])
	}
	root0, tx0 := meta(0)
	root1, tx1 := meta(1)
	if tx1 > tx0 {
		root0 = root1
	}
	return int64(root0) * pageSize
}

// walSegment returns the path of the first segment of the node's Raft log.
func walSegment(t *testing.T, dataDir string) string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dataDir, "raft", "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment in %s: %v", filepath.Join(dataDir, "raft", "wal"), err)
	}
	return segs[0]
}

// walFirstRecord is the offset of a segment's first record (past the
// segment header; raftnode/wal/record.go).
const walFirstRecord = 40

// appendBytes appends b to the file at path.
func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// snapshotFile returns the path of name in the node's only snapshot.
func snapshotFile(t *testing.T, dataDir, name string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "raft", "snapshots"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("snapshots: %v %v", ents, err)
	}
	return filepath.Join(dataDir, "raft", "snapshots", ents[0].Name(), name)
}

// TestDamagedDataFiles damages, one at a time, each data file of a stopped
// node (flipped bytes where bbolt or the checksums must notice, a
// truncation) and starts it. A damaged Raft log or snapshot is refused,
// by `cairn check` and by `cairn serve`, with the file named; a damaged
// state database, which is redundant, is set aside (and named) and rebuilt
// from the snapshot and the log, with every key back; garbage after the
// log's last record (a write a crash tore) is reported as recoverable and
// cut off, with every key there.
func TestDamagedDataFiles(t *testing.T) {
	pristine := stoppedNode(t)
	state := func(d string) string { return filepath.Join(d, "fsm", "state.db") }
	raftLog := func(d string) string { return walSegment(t, d) }
	const rebuilt, tornCut = "set aside as state.db.damaged; rebuilding it", "a torn write at offset"
	cases := []struct {
		name    string
		file    func(dataDir string) string
		damage  func(t *testing.T, path string)
		refused bool   // else repaired:
		repair  string // what the node logs
	}{
		{"state.db root page", state, func(t *testing.T, p string) { flipByte(t, p, boltRootPage(t, p)+8) }, false, rebuilt},
		{"state.db truncated", state, func(t *testing.T, p string) { mustTruncate(t, p, 4*4096) }, false, rebuilt},
		{"state.db one meta page", state, func(t *testing.T, p string) { flipByte(t, p, 16+2) }, false, rebuilt},
		{"state.db both meta pages", state, func(t *testing.T, p string) { flipByte(t, p, 16+2); flipByte(t, p, 4096+16+2) }, false, rebuilt},
		{"raft log first record", raftLog, func(t *testing.T, p string) { flipByte(t, p, walFirstRecord+30) }, true, ""},
		{"raft log segment header", raftLog, func(t *testing.T, p string) { flipByte(t, p, 20) }, true, ""},
		{"raft log torn tail", raftLog, func(t *testing.T, p string) { appendBytes(t, p, []byte(strings.Repeat("torn", 50))) }, false, tornCut},
		{"snapshot state.bin byte", func(d string) string { return snapshotFile(t, d, "state.bin") }, func(t *testing.T, p string) { flipByte(t, p, 100) }, true, ""},
		{"snapshot state.bin truncated", func(d string) string { return snapshotFile(t, d, "state.bin") }, func(t *testing.T, p string) { mustTruncate(t, p, 100) }, true, ""},
		{"snapshot meta.json", func(d string) string { return snapshotFile(t, d, "meta.json") }, func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte("{not json"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true, ""},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			n := *pristine
			n.dir = t.TempDir()
			if err := os.CopyFS(n.dir, os.DirFS(pristine.dir)); err != nil {
				t.Fatal(err)
			}
			dataDir := filepath.Join(n.dir, "data")
			n.args = append(withoutFlag(n.args, "--data-dir"), "--data-dir", dataDir)
			path := c.file(dataDir)
			c.damage(t, path)

			out, err := runCairn(t, n.dir, nil, "check", "--data-dir", dataDir)
			if c.refused {
				if err == nil || !strings.Contains(out, "damaged data file: "+path) {
					t.Fatalf("cairn check: %v, output:\n%s\nwant a failure naming %s", err, out, path)
				}
				out, err = runCairn(t, n.dir, nil, n.args...)
				if err == nil || !strings.Contains(out, "damaged data file: "+path) || !strings.Contains(out, "Disk full and damaged data") {
					t.Fatalf("cairn serve: %v, output:\n%s\nwant a refusal naming %s and the README's procedure", err, out, path)
				}
				return
			}
			if err != nil || !strings.Contains(out, "recoverable: ") || !strings.Contains(out, path) {
				t.Fatalf("cairn check: %v, output:\n%s\nwant %s reported as recoverable", err, out, path)
			}
			n.start(t)
			waitAllReady(t, 30*time.Second, &n)
			for i := range damageKeys {
				checkKey(t, n.base(), "d", e2eKV{"o", fmt.Sprintf("k%02d", i), json.RawMessage(fmt.Sprint(i))})
			}
			if log := n.p.out.String(); !strings.Contains(log, path+": ") || !strings.Contains(log, c.repair) {
				t.Fatalf("the node did not say it repaired %s (%q):\n%s", path, c.repair, log)
			}
			if c.repair != rebuilt {
				return
			}
			if _, err := os.Stat(path + ".damaged"); err != nil {
				t.Fatalf("the damaged file was not kept: %v", err)
			}
		})
	}
}

func mustTruncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildNodeFromPeers follows the README's procedure for a node whose
// Raft log is damaged: the node refuses to start; the operator removes it
// from the cluster (cairn cluster remove), wipes its data directory and
// starts it with --join; it receives a snapshot from the leader and ends
// with the same state hash and every key.
func TestRebuildNodeFromPeers(t *testing.T) {
	nodes, _ := newThreeNodes(t, nil)
	for _, n := range nodes {
		n.start(t)
	}
	waitAllReady(t, 30*time.Second, nodes...)
	n1, n3 := nodes[0], nodes[2]
	mustREST(t, http.MethodPut, nsURL(n1.base(), "r"), map[string]any{}, nil)
	var keys []e2eKV
	for i := range 30 {
		kv := e2eKV{"o", fmt.Sprintf("k%02d", i), json.RawMessage(fmt.Sprint(i))}
		putKey(t, nodes[i%3].base(), "r", kv.obj, kv.key, kv.value)
		keys = append(keys, kv)
	}
	waitSameHash(t, nodes...)
	n3.p.stop(t)
	dataDir := filepath.Join(n3.dir, "data")
	seg := walSegment(t, dataDir)
	flipByte(t, seg, walFirstRecord+30)
	if out, err := runCairn(t, n3.dir, nil, n3.args...); err == nil || !strings.Contains(out, "damaged data file: "+seg) {
		t.Fatalf("n3 with a damaged log: %v\n%s", err, out)
	}

	// The procedure.
	if out, err := runCairn(t, n1.dir, nil, "cluster", "remove", "n3", "--endpoints", n1.grpc); err != nil {
		t.Fatalf("cairn cluster remove n3: %v\n%s", err, out)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	n3.args = append(withoutFlag(n3.args, "--initial-cluster"), "--join", n1.grpc)
	n3.start(t)
	waitAllReady(t, 60*time.Second, n3)
	// Writes go on during and after the rebuild.
	kv := e2eKV{"o", "after", json.RawMessage(`"rebuilt"`)}
	putKey(t, n3.base(), "r", kv.obj, kv.key, kv.value)
	keys = append(keys, kv)
	waitSameHash(t, nodes...)
	for _, kv := range keys {
		checkKey(t, n3.base(), "r", kv)
	}
}
