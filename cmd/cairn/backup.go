package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
	"github.com/cairndb/cairn/server"
	"github.com/spf13/cobra"
)

func newBackupCmd() *cobra.Command {
	bk := &cobra.Command{Use: "backup", Short: "Save the cluster's state to a file, restore it, or seed a new cluster from it (admin)"}
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Stream an online, consistent backup of the cluster to FILE",
		Long: `Stream an online, consistent backup of the cluster to FILE. Writes go on
meanwhile; the backup holds every write acknowledged before it started.
The file is written to FILE.partial, checked, and renamed to FILE only when
complete.`,
		Example: "  cairn backup save backup.cairn",
		Args:    cobra.ExactArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return runBackupSave(cmd, args[0]) },
	}
	var seed seedFlags
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the running cluster's state with a backup, or seed a new node's data directory from it",
		Long: `Replace the whole state of the running cluster with the backup in FILE:
every node ends with the backup's state, and writes after the restore get
revisions above it. The file is verified completely (header, SHA-256,
snapshot checksum) before anything is replaced; a corrupted or truncated
file is refused.

With --data-dir, no server is contacted: the backup seeds the data
directory of one node of a brand-new cluster (disaster recovery). Seed
every node of the new cluster from the same file with the same
--initial-cluster, then start each with cairn serve on its directory; no
bootstrap is needed, and new writes get revisions after the backup's.`,
		Example: `  cairn backup restore backup.cairn
  cairn backup restore backup.cairn --data-dir /var/lib/cairn/n1 --id n1 \
      --initial-cluster n1=10.0.0.1:7500,n2=10.0.0.2:7500,n3=10.0.0.3:7500`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if seed.dataDir != "" || seed.initialCluster != "" || seed.id != "" {
				return runBackupSeed(cmd, args[0], seed)
			}
			return runBackupRestore(cmd, args[0])
		},
	}
	restore.Flags().StringVar(&seed.dataDir, "data-dir", "", "seed this node data directory offline instead of restoring into a running cluster")
	restore.Flags().StringVar(&seed.id, "id", "", "with --data-dir: the node's id (must be in --initial-cluster)")
	restore.Flags().StringVar(&seed.initialCluster, "initial-cluster", "", "with --data-dir: the new cluster, id=raftaddr,... (the same for every node)")
	bk.AddCommand(save, restore)
	return bk
}

type seedFlags struct {
	dataDir, id, initialCluster string
}

func runBackupSave(cmd *cobra.Command, path string) error {
	c, err := newClient(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	partial := path + ".partial"
	f, err := os.Create(partial)
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			_ = f.Close()
			_ = os.Remove(partial)
		}
	}()
	p := newProgress(cmd, "saved")
	n, err := c.Backup(cmd.Context(), io.MultiWriter(f, p))
	p.done()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	info, err := fsm.VerifyBackup(f)
	if err != nil {
		return fmt.Errorf("backup: the file received does not verify: %w", err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	f = nil
	if err := os.Rename(partial, path); err != nil {
		_ = os.Remove(partial)
		return err
	}
	out := newPrinter(cmd)
	if out.json {
		return out.value(map[string]any{"file": path, "bytes": n, "index": info.Index, "term": info.Term})
	}
	fmt.Fprintf(out.w, "saved %s: %d bytes, index %d, term %d\n", path, n, info.Index, info.Term)
	return nil
}

// openVerified opens a backup file and verifies it completely.
func openVerified(path string) (*os.File, fsm.BackupInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fsm.BackupInfo{}, err
	}
	info, err := fsm.VerifyBackup(f)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return nil, info, fmt.Errorf("%s: %w; nothing was restored", path, err)
	}
	return f, info, nil
}

func runBackupRestore(cmd *cobra.Command, path string) error {
	f, info, err := openVerified(path) // refuse a bad file before contacting anyone
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := newClient(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	p := newProgress(cmd, "sent")
	resp, err := c.Restore(cmd.Context(), io.TeeReader(f, p))
	p.done()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	out := newPrinter(cmd)
	if out.json {
		return out.message(resp)
	}
	fmt.Fprintf(out.w, "restored %s: backup index %d (term %d), %d bytes; the cluster holds it from revision %d\n",
		path, info.Index, info.Term, resp.Bytes, resp.RestoredRevision)
	return nil
}

func runBackupSeed(cmd *cobra.Command, path string, s seedFlags) error {
	if s.dataDir == "" || s.initialCluster == "" {
		return errors.New("seeding a new node needs --data-dir and --initial-cluster (and --id)")
	}
	servers, err := parseInitialCluster(s.initialCluster)
	if err != nil {
		return err
	}
	if s.id != "" && !slices.ContainsFunc(servers, func(srv raftnode.Server) bool { return srv.ID == s.id }) {
		return fmt.Errorf("--initial-cluster does not name --id %q", s.id)
	}
	info, err := server.Seed(server.SeedConfig{Backup: path, Dir: s.dataDir, Servers: servers})
	if err != nil {
		if errors.Is(err, fsm.ErrBadBackup) {
			return fmt.Errorf("%s: %w; nothing was written", path, err)
		}
		return err
	}
	out := newPrinter(cmd)
	if out.json {
		return out.value(map[string]any{"file": path, "data_dir": s.dataDir, "index": info.Index, "term": info.Term})
	}
	fmt.Fprintf(out.w, "seeded %s from %s: index %d, term %d; start it with cairn serve --data-dir %s\n", s.dataDir, path, info.Index, info.Term, s.dataDir)
	return nil
}

// progress shows bytes moved on one line, when stdout is a terminal.
type progress struct {
	w     io.Writer // nil: not a terminal
	verb  string
	n     int64
	last  time.Time
	start time.Time
}

func newProgress(cmd *cobra.Command, verb string) *progress {
	p := &progress{verb: verb, start: time.Now()}
	if f, ok := cmd.OutOrStdout().(*os.File); ok && cli.output != "json" {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.w = f
		}
	}
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.w != nil && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		fmt.Fprintf(p.w, "\r%s %s", p.verb, humanBytes(p.n))
	}
	return len(b), nil
}

// done ends the progress line.
func (p *progress) done() {
	if p.w != nil {
		fmt.Fprintf(p.w, "\r%s %s in %s\n", p.verb, humanBytes(p.n), time.Since(p.start).Round(time.Millisecond))
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
