package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
	"google.golang.org/grpc/codes"
)

// nodeAddrs are the addresses a test node listens on.
type nodeAddrs struct{ id, raft, grpc, http string }

func addrsOf(c *testCluster) []nodeAddrs {
	var out []nodeAddrs
	for _, n := range c.running() {
		out = append(out, nodeAddrs{n.id, n.Node.RaftAddr(), n.Server.GRPCAddr(), n.Server.HTTPAddr()})
	}
	return out
}

// mustStartClusterAt starts a new cluster on fresh data directories and the
// given addresses (those of a cluster stopped before), so that the member
// records restored from that cluster's backup are the ones its nodes would
// publish. With seeded set the directories already hold a seeded state:
// no bootstrap, no join.
func mustStartClusterAt(t *testing.T, addrs []nodeAddrs, dirs map[string]string) *testCluster {
	t.Helper()
	c := &testCluster{}
	root := t.TempDir()
	t.Cleanup(c.stopAll)
	for i, a := range addrs {
		dir, seeded := dirs[a.id]
		if !seeded {
			dir = filepath.Join(root, a.id)
		}
		cfg := c.nodeConfig(a.id, dir)
		cfg.Raft.BindAddr = a.raft
		cfg.Server.GRPCAddr, cfg.Server.HTTPAddr = a.grpc, a.http
		switch {
		case seeded:
		case i == 0:
			cfg.Bootstrap = true
		default:
			cfg.Join = []string{addrs[0].grpc}
		}
		c.mustStart(t, a.id, cfg)
	}
	c.waitStable(t)
	return c
}

// mustBackup streams a backup from n into a file and returns its path.
func mustBackup(t *testing.T, n *testNode) string {
	t.Helper()
	stream, err := n.cluster().Backup(testCtx(t), &cairnv1.BackupRequest{})
	if err != nil {
		t.Fatalf("Backup via %s: %v", n.id, err)
	}
	path := filepath.Join(t.TempDir(), "backup.cairn")
	var buf bytes.Buffer
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Backup via %s: %v", n.id, err)
		}
		buf.Write(chunk.Data)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// restoreFile uploads data through n's Restore.
func restoreFile(ctx context.Context, n *testNode, data []byte) (*cairnv1.RestoreResponse, error) {
	up, err := n.cluster().Restore(ctx)
	if err != nil {
		return nil, err
	}
	for len(data) > 0 {
		k := min(len(data), 64<<10)
		if err := up.Send(&cairnv1.RestoreRequest{Chunk: data[:k]}); err != nil {
			break // CloseAndRecv says why
		}
		data = data[k:]
	}
	return up.CloseAndRecv()
}

// backupState restores a backup file into a standalone FSM and returns its
// hash and applied index: the source's state at the backup's index.
func backupState(t *testing.T, path string) ([]byte, uint64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := fsm.VerifyBackup(f)
	if err != nil {
		t.Fatalf("VerifyBackup: %v", err)
	}
	state, err := fsm.Open(fsm.Options{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	if err := state.Restore(fsm.BackupSnapshot(f, info.Size)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	h, err := state.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h, state.AppliedIndex()
}

// TestBackupRestore takes a backup from a 3-node cluster while 8 clients
// write, then restores it into a fresh running cluster (online) and seeds
// another fresh cluster from it (offline): every node of both ends with
// the state the source had at the backup's index. Corrupted and truncated
// files are refused before anything is replaced.
func TestBackupRestore(t *testing.T) {
	src := mustStartCluster(t, 3, clusterOptions{})
	mustPutNamespace(t, src.leader(t), "bk")
	nodes := src.running()

	// 8 writers, each through a node of its own (followers forward).
	var acked atomic.Uint64 // highest revision acknowledged so far
	var count atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[w%len(nodes)]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := n.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{
					Namespace: "bk", Object: fmt.Sprintf("obj-%d", w), Key: fmt.Sprintf("k/%06d", i),
					Content: &cairnv1.PutKeyRequest_Value{Value: jsonValue(t, map[string]any{"w": w, "i": i})},
				})
				if err != nil {
					continue
				}
				count.Add(1)
				for rev := resp.Header.Revision; ; {
					cur := acked.Load()
					if rev <= cur || acked.CompareAndSwap(cur, rev) {
						break
					}
				}
			}
		}()
	}
	waitFor(t, waitLong, "writes before the backup", func() bool { return count.Load() >= 200 })
	before := acked.Load() // acknowledged before the backup was asked for
	path := mustBackup(t, src.followers(t)[0])
	atDone := count.Load()
	waitFor(t, waitLong, "writes after the backup", func() bool { return count.Load() >= atDone+100 })
	close(stop)
	wg.Wait()

	// Over REST the body is the raw file.
	res, err := http.Get("http://" + src.leader(t).Server.HTTPAddr() + "/v1/cluster/backup")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fsm.VerifyBackup(res.Body); err != nil || res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET /v1/cluster/backup: %s, %s, %v", res.Status, res.Header.Get("Content-Type"), err)
	}
	res.Body.Close()

	want, index := backupState(t, path)
	if index < before {
		t.Fatalf("backup at index %d misses writes acknowledged up to %d before it was taken", index, before)
	}
	if h := src.mustStateHash(t); bytes.Equal(h, want) {
		t.Fatalf("writes after the backup did not change the source (the test proves nothing)")
	}
	t.Logf("backup at index %d (%d writes acknowledged by then, %d in all)", index, atDone, count.Load())
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	addrs := addrsOf(src)
	src.stopAll()

	t.Run("online", func(t *testing.T) {
		dst := mustStartClusterAt(t, addrs, nil)
		mustPutNamespace(t, dst.leader(t), "fresh")
		for i := range 20 {
			mustPutKey(t, dst.leader(t), "fresh", "o", fmt.Sprintf("k%d", i), i)
		}
		old := dst.mustStateHash(t)
		oldApplied := dst.leader(t).FSM.AppliedIndex()

		// A flipped byte anywhere, or a truncated file, is refused before
		// anything is replaced.
		for _, at := range []int{0, 9, 20, fsm.BackupHeaderSize + 3, len(data) / 2, len(data) - fsm.BackupTrailerSize - 2, len(data) - 1} {
			bad := bytes.Clone(data)
			bad[at] ^= 0x20
			_, err := restoreFile(testCtx(t), dst.followers(t)[0], bad)
			wantCode(t, err, codes.InvalidArgument, "bad backup file")
		}
		for _, n := range []int{0, 10, fsm.BackupHeaderSize, len(data) / 3, len(data) - fsm.BackupTrailerSize, len(data) - 1} {
			_, err := restoreFile(testCtx(t), dst.leader(t), data[:n])
			wantCode(t, err, codes.InvalidArgument, "bad backup file")
		}
		_, err := restoreFile(testCtx(t), dst.leader(t), append(bytes.Clone(data), 0))
		wantCode(t, err, codes.InvalidArgument, "after the trailer")
		if h := dst.mustStateHash(t); !bytes.Equal(h, old) || dst.leader(t).FSM.AppliedIndex() != oldApplied {
			t.Fatalf("a refused restore changed the state")
		}

		// A watch that will try to resume from a revision of the old state.
		lastIndex := dst.leader(t).Node.Status().LastIndex

		resp, err := restoreFile(testCtx(t), dst.followers(t)[0], data) // forwarded to the leader
		if err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if resp.BackupIndex != index || resp.RestoredRevision <= max(index, lastIndex) || resp.Bytes != int64(len(data)) {
			t.Fatalf("Restore answered %v; backup index %d, last index before %d, %d bytes", resp, index, lastIndex, len(data))
		}
		r := resp.RestoredRevision
		waitFor(t, waitLong, "every node to install the backup", func() bool {
			for _, n := range dst.running() {
				if n.FSM.AppliedIndex() < r {
					return false
				}
			}
			return true
		})
		if h := dst.mustStateHash(t); !bytes.Equal(h, want) {
			t.Fatalf("after the restore the cluster holds %x, the source held %x at index %d", h, want, index)
		}
		for _, n := range dst.running() {
			if cur, oldest := n.Server.hub.Current(); oldest != r+1 || cur < r {
				t.Fatalf("%s: watch history from %d (current %d), want it to restart after the restored revision %d", n.id, oldest, cur, r)
			}
			// A watcher resuming from a revision below the restore is told
			// to read again, never handed a silent gap.
			w, err := n.watch().Watch(testCtx(t), &cairnv1.WatchRequest{Namespace: "bk", StartRevision: index + 1})
			if err == nil {
				_, err = w.Recv()
			}
			wantCode(t, err, codes.OutOfRange)
		}
		if got := mustGetKey(t, dst.followers(t)[0], "bk", "obj-0", "k/000000", Linearizable); got.Header.Revision < r {
			t.Fatalf("read after the restore at revision %d, before it (%d)", got.Header.Revision, r)
		}
		if _, err := dst.leader(t).FSM.Namespace("fresh"); !errors.Is(err, fsm.ErrNamespaceNotFound) {
			t.Fatalf("the fresh cluster's own namespace survived the restore: %v", err)
		}
		if put := mustPutKey(t, dst.followers(t)[0], "bk", "after", "k", 1); put.Header.Revision <= r {
			t.Fatalf("a write after the restore got revision %d, not above the restore's %d", put.Header.Revision, r)
		}
	})

	t.Run("offline seed", func(t *testing.T) {
		var servers []raftnode.Server
		for _, a := range addrs {
			servers = append(servers, raftnode.Server{ID: a.id, Address: a.raft, Voter: true})
		}
		// A corrupted file seeds nothing.
		bad := bytes.Clone(data)
		bad[len(bad)/2] ^= 1
		badPath := filepath.Join(t.TempDir(), "bad.cairn")
		if err := os.WriteFile(badPath, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		badDir := filepath.Join(t.TempDir(), "bad")
		if _, err := Seed(SeedConfig{Backup: badPath, Dir: badDir, Servers: servers}); !errors.Is(err, fsm.ErrBadBackup) {
			t.Fatalf("Seed of a corrupted file: %v, want ErrBadBackup", err)
		}
		if _, err := os.Stat(badDir); !os.IsNotExist(err) {
			t.Fatalf("Seed of a corrupted file created %s (%v)", badDir, err)
		}

		dirs := map[string]string{}
		for _, a := range addrs {
			dirs[a.id] = filepath.Join(t.TempDir(), a.id)
			info, err := Seed(SeedConfig{Backup: path, Dir: dirs[a.id], Servers: servers})
			if err != nil || info.Index != index {
				t.Fatalf("Seed(%s): %v, %+v", a.id, err, info)
			}
		}
		if _, err := Seed(SeedConfig{Backup: path, Dir: dirs[addrs[0].id], Servers: servers}); err == nil {
			t.Fatalf("Seed over a seeded directory succeeded")
		}
		dst := mustStartClusterAt(t, addrs, dirs)
		if h := dst.mustStateHash(t); !bytes.Equal(h, want) {
			t.Fatalf("the seeded cluster holds %x, the source held %x at index %d", h, want, index)
		}
		if put := mustPutKey(t, dst.followers(t)[0], "bk", "after", "k", 1); put.Header.Revision <= index {
			t.Fatalf("a write on the seeded cluster got revision %d, not above the backup's %d", put.Header.Revision, index)
		}
	})
}
