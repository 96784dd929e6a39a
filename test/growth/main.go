// Command growth measures how cairn holds up as its state grows (the
// performance issue's growth targets), on one machine, in one run:
//
//  1. a baseline: a fresh 3-node cluster, `cairn bench put` over a small key
//     space (-base-keys);
//  2. a grown cluster: the state of -keys keys in -objects objects is built
//     directly through the FSM (far faster than through Raft), saved as a
//     backup file and seeded into three data directories (`cairn backup
//     restore --data-dir`); the same bench over the whole key space; the
//     nodes' memory (RSS, split into anonymous and file-backed pages: the
//     state database is memory-mapped); the time a restarted node takes to
//     be ready (/readyz); the time a new node takes to be ready, which it
//     can only reach by installing a snapshot of the whole state.
//
// Every figure is printed as it is measured, then one JSON line. Run with
//
//	go build -o /tmp/cairn ./cmd/cairn
//	go run ./test/growth -cairn /tmp/cairn -keys 10000000 -objects 1000000
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/protobuf/proto"
)

type config struct {
	cairn            string
	dir              string
	keys, objects    int
	baseKeys         int
	valueSize        int
	clients          int
	duration, warmup time.Duration
	port             int
	backup           string
}

func main() {
	var c config
	flag.StringVar(&c.cairn, "cairn", "cairn", "the cairn binary")
	flag.StringVar(&c.dir, "dir", "", "work directory (default: a new temporary one, removed at the end)")
	flag.IntVar(&c.keys, "keys", 10_000_000, "keys of the grown state")
	flag.IntVar(&c.objects, "objects", 1_000_000, "objects the keys are spread over")
	flag.IntVar(&c.baseKeys, "base-keys", 10_000, "key space of the baseline")
	flag.IntVar(&c.valueSize, "value-size", 256, "bytes of each value")
	flag.IntVar(&c.clients, "clients", 64, "bench clients")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "measured time of each bench")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured load before each bench")
	flag.IntVar(&c.port, "port", 21100, "base port: nodes use base+1 to base+32 (below Linux's ephemeral ports, which other programs' outgoing connections take)")
	flag.StringVar(&c.backup, "backup", "", "use this backup file of the grown state, building it first only when it does not exist (default: built afresh in the work directory)")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if c.keys < c.objects || c.objects < 1 {
		log.Fatalf("-keys %d, -objects %d: want at least one key per object", c.keys, c.objects)
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "cairn-growth-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(d)
		c.dir = d
	}
	res, err := run(c)
	stopAll()
	if err != nil {
		log.Fatal(err)
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
}

// results are the figures of one run.
type results struct {
	Keys           int             `json:"keys"`
	Objects        int             `json:"objects"`
	BuildSeconds   float64         `json:"build_s"`
	BackupBytes    int64           `json:"backup_bytes"`
	SeedSeconds    float64         `json:"seed_s"`
	Baseline       json.RawMessage `json:"bench_baseline"`
	Grown          json.RawMessage `json:"bench_grown"`
	RSS            []memory        `json:"rss"`
	RestartSeconds float64         `json:"restart_ready_s"`
	InstallSeconds float64         `json:"snapshot_install_ready_s"`
}

type memory struct {
	Node    string `json:"node"`
	RSS     int64  `json:"rss_bytes"`
	RSSAnon int64  `json:"rss_anon_bytes"`
	RSSFile int64  `json:"rss_file_bytes"`
}

func run(c config) (*results, error) {
	res := &results{Keys: c.keys, Objects: c.objects}
	ids := []string{"n1", "n2", "n3"}

	log.Printf("baseline: fresh cluster, %d keys", c.baseKeys)
	base := newCluster(c, filepath.Join(c.dir, "base"), 0)
	if err := base.start(ids, true); err != nil {
		return nil, err
	}
	out, err := base.bench(c.baseKeys, 1)
	if err != nil {
		return nil, err
	}
	res.Baseline = out
	base.stop()

	backup := c.backup
	if backup == "" {
		backup = filepath.Join(c.dir, "grown.cairn")
	}
	if st, err := os.Stat(backup); err == nil && c.backup != "" {
		res.BackupBytes = st.Size()
		log.Printf("using %s (%d bytes): it must hold %d keys in %d objects", backup, st.Size(), c.keys, c.objects)
	} else {
		start := time.Now()
		if res.BackupBytes, err = build(backup, c); err != nil {
			return nil, err
		}
		res.BuildSeconds = time.Since(start).Seconds()
		log.Printf("built %d keys in %d objects: backup of %d bytes in %.1f s", c.keys, c.objects, res.BackupBytes, res.BuildSeconds)
	}

	grown := newCluster(c, filepath.Join(c.dir, "grown"), 20)
	start := time.Now()
	for _, id := range ids {
		if err := runCmd(c.cairn, "backup", "restore", backup, "--data-dir", grown.dataDir(id), "--id", id, "--initial-cluster", grown.initialCluster(ids)); err != nil {
			return nil, err
		}
	}
	res.SeedSeconds = time.Since(start).Seconds()
	log.Printf("seeded 3 data directories in %.1f s", res.SeedSeconds)
	if err := grown.start(ids, false); err != nil {
		return nil, err
	}
	if out, err = grown.bench(c.keys, c.objects); err != nil {
		return nil, err
	}
	res.Grown = out
	for _, id := range ids {
		m, err := rss(grown.procs[id].cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		m.Node = id
		res.RSS = append(res.RSS, m)
		log.Printf("%s: RSS %d MiB (anonymous %d MiB, file-backed %d MiB)", id, m.RSS>>20, m.RSSAnon>>20, m.RSSFile>>20)
	}

	// Restart: a node stopped gracefully and started again on its data.
	if err := grown.stopNode("n3"); err != nil {
		return nil, err
	}
	start = time.Now()
	if err := grown.startNode("n3", nil); err != nil {
		return nil, err
	}
	res.RestartSeconds = time.Since(start).Seconds()
	log.Printf("restarted n3: ready in %.2f s", res.RestartSeconds)

	// A new member: it can only catch up by installing a snapshot.
	start = time.Now()
	if err := grown.startNode("n4", []string{"--join", grown.grpcAddr("n1")}); err != nil {
		return nil, err
	}
	res.InstallSeconds = time.Since(start).Seconds()
	log.Printf("new node n4: snapshot installed and ready in %.1f s", res.InstallSeconds)
	return res, nil
}

// build writes a backup file holding c.keys keys spread evenly over
// c.objects objects of namespace "bench", applying the commands to an FSM
// of its own, and returns the file's size.
func build(path string, c config) (int64, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), "build-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	f, err := fsm.Open(fsm.Options{Dir: dir})
	if err != nil {
		return 0, err
	}
	defer f.Close()
	index := uint64(0)
	const batch = 64
	var entries []fsm.Entry
	apply := func(cmd *raftcmdv1.Command, flush bool) error {
		index++
		cmd.Version, cmd.TimeUnixMs = fsm.CommandVersion, 1_700_000_000_000+int64(index)
		data, err := proto.Marshal(cmd)
		if err != nil {
			return err
		}
		entries = append(entries, fsm.Entry{Index: index, Data: data})
		if len(entries) < batch && !flush {
			return nil
		}
		results, err := f.ApplyBatch(entries)
		if err != nil {
			return err
		}
		for _, r := range results {
			if r.Err != nil {
				return r.Err
			}
		}
		entries = entries[:0]
		return nil
	}
	err = apply(&raftcmdv1.Command{Op: &raftcmdv1.Command_PutNamespace{PutNamespace: &raftcmdv1.PutNamespace{
		Name: "bench", Settings: &raftcmdv1.NamespaceSettings{}}}}, true)
	if err != nil {
		return 0, err
	}
	value := make([]byte, c.valueSize)
	for o := range c.objects {
		var puts []*raftcmdv1.KeyPut
		for i := o; i < c.keys; i += c.objects {
			puts = append(puts, &raftcmdv1.KeyPut{Key: benchKey(i), Value: value, Encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY})
		}
		cmd := &raftcmdv1.Command{Op: &raftcmdv1.Command_BatchWrite{BatchWrite: &raftcmdv1.BatchWrite{
			Namespace: "bench", Object: benchObject(o), Puts: puts}}}
		if err := apply(cmd, o == c.objects-1); err != nil {
			return 0, err
		}
		if o%100_000 == 99_999 {
			log.Printf("built %d of %d objects", o+1, c.objects)
		}
	}
	s, err := f.Snapshot()
	if err != nil {
		return 0, err
	}
	defer s.Release()
	out, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	n, err := fsm.WriteBackup(out, s, 1)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// benchKey and benchObject name keys and objects as cairn bench does (key
// i in object i mod objects), so that its writes over the same key space
// overwrite the built keys.
func benchKey(i int) string    { return "k" + strconv.Itoa(i) }
func benchObject(i int) string { return "o" + strconv.Itoa(i) }

// cluster is a set of cairn serve processes on loopback.
type cluster struct {
	c     config
	root  string
	port  int // first port of this cluster
	procs map[string]*proc
}

// proc is a started process and a channel closed when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

var running []*proc

func newCluster(c config, root string, offset int) *cluster {
	return &cluster{c: c, root: root, port: c.port + offset, procs: map[string]*proc{}}
}

func (cl *cluster) num(id string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "n"))
	return n
}
func (cl *cluster) dataDir(id string) string { return filepath.Join(cl.root, id) }
func (cl *cluster) raftAddr(id string) string {
	return fmt.Sprintf("127.0.0.1:%d", cl.port+cl.num(id))
}
func (cl *cluster) grpcAddr(id string) string {
	return fmt.Sprintf("127.0.0.1:%d", cl.port+4+cl.num(id))
}
func (cl *cluster) httpAddr(id string) string {
	return fmt.Sprintf("127.0.0.1:%d", cl.port+8+cl.num(id))
}
func (cl *cluster) initialCluster(ids []string) string {
	var parts []string
	for _, id := range ids {
		parts = append(parts, id+"="+cl.raftAddr(id))
	}
	return strings.Join(parts, ",")
}

// start starts the nodes of ids, forming the cluster when form is set, and
// waits until every one is ready.
func (cl *cluster) start(ids []string, form bool) error {
	for _, id := range ids {
		var extra []string
		if form {
			extra = []string{"--initial-cluster", cl.initialCluster(ids)}
		}
		if err := cl.spawn(id, extra); err != nil {
			return err
		}
	}
	for _, id := range ids {
		if err := cl.waitReady(id, 10*time.Minute); err != nil {
			return err
		}
	}
	return cl.waitPublished(ids[0], len(ids))
}

// waitPublished waits until the cluster seen from id has n members that
// all publish their gRPC address (the bench finds the leader by it).
func (cl *cluster) waitPublished(id string, n int) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for range 3000 {
		var view struct {
			Members []struct {
				GRPCAddr string `json:"grpc_addr"`
			} `json:"members"`
		}
		resp, err := client.Get("http://" + cl.httpAddr(id) + "/v1/cluster")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&view)
			resp.Body.Close()
		}
		published := 0
		for _, m := range view.Members {
			if m.GRPCAddr != "" {
				published++
			}
		}
		if err == nil && published == n {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the members' addresses are not published after a minute")
}

// startNode starts one node and waits until it is ready.
func (cl *cluster) startNode(id string, extra []string) error {
	if err := cl.spawn(id, extra); err != nil {
		return err
	}
	return cl.waitReady(id, 10*time.Minute)
}

func (cl *cluster) spawn(id string, extra []string) error {
	if err := os.MkdirAll(cl.dataDir(id), 0o750); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(cl.root, id+".log"))
	if err != nil {
		return err
	}
	args := append([]string{"serve", "--id", id, "--data-dir", cl.dataDir(id), "--insecure-no-auth",
		"--raft-addr", cl.raftAddr(id), "--grpc-addr", cl.grpcAddr(id), "--http-addr", cl.httpAddr(id)}, extra...)
	cmd := exec.Command(cl.c.cairn, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	cl.procs[id] = p
	running = append(running, p)
	return nil
}

// waitReady polls the node's /readyz until it answers 200.
func (cl *cluster) waitReady(id string, limit time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + cl.httpAddr(id) + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-cl.procs[id].done:
			return fmt.Errorf("%s exited: %v (log in %s)", id, cl.procs[id].cmd.ProcessState, filepath.Join(cl.root, id+".log"))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s (log in %s)", id, limit, filepath.Join(cl.root, id+".log"))
}

func (cl *cluster) stopNode(id string) error {
	p := cl.procs[id]
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	<-p.done
	// the port must be free before the node starts again on it
	for range 100 {
		if l, err := net.Listen("tcp", cl.grpcAddr(id)); err == nil {
			l.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s's port stays in use after it stopped", id)
}

func (cl *cluster) stop() {
	for id := range cl.procs {
		_ = cl.stopNode(id)
	}
}

// bench runs cairn bench put against the leader and returns its JSON line.
func (cl *cluster) bench(keys, objects int) (json.RawMessage, error) {
	args := []string{"bench", "put", "--endpoints", strings.Join([]string{cl.grpcAddr("n1"), cl.grpcAddr("n2"), cl.grpcAddr("n3")}, ","),
		"--clients", strconv.Itoa(cl.c.clients), "--duration", cl.c.duration.String(), "--warmup", cl.c.warmup.String(),
		"--keys", strconv.Itoa(keys), "--objects", strconv.Itoa(objects), "--value-size", strconv.Itoa(cl.c.valueSize), "-o", "json"}
	cmd := exec.Command(cl.c.cairn, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("cairn %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	line := strings.TrimSpace(string(out))
	log.Printf("bench put, %d keys in %d objects: %s", keys, objects, line)
	return json.RawMessage(line), nil
}

// rss reads a process's resident memory from /proc.
func rss(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.RSS = kb << 10
		case "RssAnon:":
			m.RSSAnon = kb << 10
		case "RssFile:":
			m.RSSFile = kb << 10
		}
	}
	return m, nil
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// stopAll kills whatever is still running.
func stopAll() {
	for _, p := range running {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
