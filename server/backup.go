package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc"
)

// backupChunk is the most a Backup message carries.
const backupChunk = 1 << 20

// Backup streams a backup file: after a linearizable read barrier (so the
// backup holds every write acknowledged before it was asked for) the
// state is captured in a read transaction, and writes go on while it
// streams.
func (c *clusterService) Backup(_ *cairnv1.BackupRequest, stream cairnv1.ClusterService_BackupServer) error {
	ctx := stream.Context()
	if _, err := c.s.readBarrier(ctx, Linearizable, 0); err != nil {
		return err
	}
	snap, err := c.s.state.Snapshot()
	if err != nil {
		return err
	}
	defer snap.Release()
	w := bufio.NewWriterSize(chunkSender{stream}, backupChunk)
	if _, err := fsm.WriteBackup(w, snap, c.s.node.Status().Term); err != nil {
		return err
	}
	return w.Flush()
}

// chunkSender sends what is written to it as HttpBody messages.
type chunkSender struct {
	stream grpc.ServerStreamingServer[httpbody.HttpBody]
}

func (c chunkSender) Write(p []byte) (int, error) {
	for n := 0; n < len(p); {
		end := min(len(p), n+backupChunk)
		if err := c.stream.Send(&httpbody.HttpBody{ContentType: "application/octet-stream", Data: p[n:end]}); err != nil {
			return n, err
		}
		n = end
	}
	return len(p), nil
}

// Restore receives a backup file into a temporary file, verifies it
// completely, and only then has Raft install it on every node. A follower
// forwards the upload to the leader.
func (c *clusterService) Restore(stream cairnv1.ClusterService_RestoreServer) error {
	ctx := stream.Context()
	_, conn, err := c.s.leader(ctx)
	if err != nil {
		return err
	}
	if conn != nil {
		return forwardRestore(ctx, cairnv1.NewClusterServiceClient(conn), stream)
	}
	f, err := os.CreateTemp("", "cairn-restore-*.cairn")
	if err != nil {
		return fmt.Errorf("server: restore: spool: %w", err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	var size int64
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n, err := f.Write(req.Chunk)
		size += int64(n)
		if err != nil {
			return fmt.Errorf("server: restore: spool: %w", err)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("server: restore: %w", err)
	}
	info, err := fsm.VerifyBackup(f)
	if err != nil {
		return err
	}
	c.s.log.Info("restoring backup", "backup_index", info.Index, "backup_term", info.Term, "bytes", info.Size)
	body := fsm.BackupSnapshot(f, info.Size)
	idx, err := c.s.node.Restore(ctx, info.Index, info.Term, body.Size(), body)
	if err != nil {
		return err
	}
	c.s.log.Info("restored backup", "backup_index", info.Index, "restored_revision", idx)
	return stream.SendAndClose(&cairnv1.RestoreResponse{
		Header:           &cairnv1.ResponseHeader{Revision: idx, NodeId: c.s.node.ID()},
		BackupIndex:      info.Index,
		BackupTerm:       info.Term,
		RestoredRevision: idx,
		Bytes:            size,
	})
}

// forwardRestore relays an upload to the leader and its answer back.
func forwardRestore(ctx context.Context, leader cairnv1.ClusterServiceClient, stream cairnv1.ClusterService_RestoreServer) error {
	up, err := leader.Restore(ctx)
	if err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := up.Send(req); err != nil {
			if errors.Is(err, io.EOF) {
				break // the leader ended the call: CloseAndRecv says why
			}
			return err
		}
	}
	resp, err := up.CloseAndRecv()
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

// SeedConfig says how to seed a node of a brand-new cluster from a backup.
type SeedConfig struct {
	// Backup is the path of the backup file. Required.
	Backup string
	// Dir is the node's data directory (as NodeConfig.Dir); it must hold
	// no state yet. Required.
	Dir string
	// Servers is the new cluster's configuration (every node is seeded
	// with the same list). Required.
	Servers []raftnode.Server
}

// Seed writes a backup's state into a new node's data directory, with no
// server running: the FSM state into Dir/fsm and a Raft snapshot at the
// backup's index, whose configuration is Servers, into Dir/raft. A node
// started on Dir has the state, needs no bootstrap, and its new entries
// get indexes after the backup's. The file is verified completely before
// anything is written. Seed returns what the backup holds.
func Seed(cfg SeedConfig) (fsm.BackupInfo, error) {
	var info fsm.BackupInfo
	if cfg.Backup == "" || cfg.Dir == "" || len(cfg.Servers) == 0 {
		return info, errors.New("server: seed: a backup file, a data directory and the cluster's servers are required")
	}
	f, err := os.Open(cfg.Backup)
	if err != nil {
		return info, fmt.Errorf("server: seed: %w", err)
	}
	defer f.Close()
	if info, err = fsm.VerifyBackup(f); err != nil {
		return info, err
	}
	for _, sub := range []string{"fsm", "raft"} {
		if entries, err := os.ReadDir(filepath.Join(cfg.Dir, sub)); err == nil && len(entries) > 0 {
			return info, fmt.Errorf("server: seed: %s already holds state; seed an empty data directory", filepath.Join(cfg.Dir, sub))
		}
	}
	state, err := fsm.Open(fsm.Options{Dir: filepath.Join(cfg.Dir, "fsm")})
	if err != nil {
		return info, err
	}
	err = state.Restore(fsm.BackupSnapshot(f, info.Size))
	if cerr := state.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return info, err
	}
	err = raftnode.Seed(filepath.Join(cfg.Dir, "raft"), info.Index, info.Term, cfg.Servers, fsm.BackupSnapshot(f, info.Size))
	return info, err
}
