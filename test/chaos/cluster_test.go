package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

// Snapshot settings of every node: low, so that snapshots and log
// compaction happen many times in a run, and a node that was down for a
// few seconds must catch up from a snapshot. Far fewer trailing logs than
// the writes made while a follower installs a snapshot (a second or two
// here): the leader must keep its log from the snapshot it sent on
// (raftnode/holdback.go). Without that, the long run's members once
// livelocked, sent one newer snapshot after another.
const (
	snapshotThreshold = "256"
	snapshotInterval  = "1s"
	trailingLogs      = "64"
)

// node is one `cairn serve` process behind two proxies: one in front of
// its Raft port (peers dial it), one in front of its gRPC port (clients
// dial it).
type node struct {
	id, ip, dir         string
	raftAddr, grpcAddr  string // the process's own ports
	httpAddr            string
	raftProxy, apiProxy *Proxy
	args                []string
	admin               *client.Client // straight to the process, past the proxies
	mu                  sync.Mutex
	cmd                 *exec.Cmd
	done                chan struct{}
	paused, running     bool
	logFile             *os.File
}

// cluster is the set of nodes of one run.
type cluster struct {
	t     testing.TB
	bin   string
	root  string
	net   *Network
	mu    sync.Mutex
	nodes []*node // current members, in id order
	next  int     // number of the next node id and IP
	// subnet is the second octet of the nodes' loopback IPs, distinct per
	// run so that concurrent runs never share an IP and port.
	subnet int
	// endpointsVersion moves when the members change, so that workload
	// clients pick up the new proxies.
	endpointsVersion int
}

// freeAddr returns a free port on ip.
func freeAddr(ip string) (string, error) {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// newNode allocates the addresses and proxies of the next node.
func (c *cluster) newNode() (*node, error) {
	c.mu.Lock()
	c.next++
	num := c.next
	c.mu.Unlock()
	n := &node{id: fmt.Sprintf("n%d", num), ip: fmt.Sprintf("127.%d.0.%d", c.subnet, num)}
	n.dir = filepath.Join(c.root, n.id)
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	for _, a := range []*string{&n.raftAddr, &n.grpcAddr, &n.httpAddr} {
		if *a, err = freeAddr(n.ip); err != nil {
			return nil, err
		}
	}
	c.net.register(n.ip, n.id)
	if n.raftProxy, err = NewProxy(c.net, n.ip+":0", n.raftAddr, n.id, false); err != nil {
		return nil, err
	}
	if n.apiProxy, err = NewProxy(c.net, n.ip+":0", n.grpcAddr, n.id, true); err != nil {
		n.raftProxy.Close()
		return nil, err
	}
	if n.admin, err = client.New(client.Config{Endpoints: []string{n.grpcAddr}, RequestTimeout: 5 * time.Second, RetryFor: time.Nanosecond}); err != nil {
		return nil, err
	}
	if n.logFile, err = os.OpenFile(filepath.Join(n.dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	n.args = []string{"serve", "--id", n.id, "--data-dir", filepath.Join(n.dir, "data"),
		"--raft-addr", n.raftAddr, "--raft-advertise", n.raftProxy.Addr(),
		"--grpc-addr", n.grpcAddr, "--grpc-advertise", n.apiProxy.Addr(), "--http-addr", n.httpAddr,
		"--snapshot-threshold", snapshotThreshold, "--snapshot-interval", snapshotInterval, "--trailing-logs", trailingLogs,
		"--log-level", "warn", "--insecure-no-auth"}
	return n, nil
}

// startCluster starts size nodes that form a cluster with
// --initial-cluster, and waits for a leader.
func startCluster(t testing.TB, bin string, size, subnet int) (*cluster, error) {
	c := &cluster{t: t, bin: bin, root: t.TempDir(), net: NewNetwork(), subnet: subnet}
	var initial []string
	for i := 0; i < size; i++ {
		n, err := c.newNode()
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
		initial = append(initial, n.id+"="+n.raftProxy.Addr())
	}
	for _, n := range c.nodes {
		n.args = append(n.args, "--initial-cluster", strings.Join(initial, ","))
		if err := n.start(c.bin); err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.waitHealthy(60 * time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// start starts (or restarts) the node's process.
func (n *node) start(bin string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		return fmt.Errorf("%s is already running", n.id)
	}
	cmd := exec.Command(bin, n.args...)
	cmd.Dir = n.dir
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = n.logFile, n.logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.id, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.cmd, n.done, n.running, n.paused = cmd, done, true, false
	return nil
}

// kill stops the process with SIGKILL (resuming it first if paused, so
// that it dies at once) and waits for it to exit.
func (n *node) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.done
	n.running, n.paused = false, false
}

// quit makes the process dump its goroutines into its log and exit
// (SIGQUIT), and waits for it.
func (n *node) quit() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running {
		return
	}
	if n.paused {
		_ = n.cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	n.running, n.paused = false, false
}

// pause stops the process with SIGSTOP; resume continues it.
func (n *node) pause() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running || n.paused {
		return fmt.Errorf("%s is not running or already paused", n.id)
	}
	n.paused = true
	return n.cmd.Process.Signal(syscall.SIGSTOP)
}

func (n *node) resume() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running && n.paused {
		_ = n.cmd.Process.Signal(syscall.SIGCONT)
		n.paused = false
	}
}

// ready reports whether the node answers /readyz with 200 (it knows a
// leader and has applied what is committed).
func (n *node) ready() bool {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + n.httpAddr + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// status asks the node itself for its view of the cluster.
func (n *node) status(ctx context.Context) (state, leader string, term uint64, err error) {
	resp, err := n.admin.ClusterOf(ctx, 0)
	if err != nil {
		return "", "", 0, err
	}
	return resp.State, resp.LeaderId, resp.Term, nil
}

// close releases the node's proxies, admin client and log file; the
// process must be stopped.
func (n *node) close() {
	n.raftProxy.Close()
	n.apiProxy.Close()
	_ = n.admin.Close()
	_ = n.logFile.Close()
}

// tail returns the last lines of the node's log.
func (n *node) tail(lines int) string {
	b, err := os.ReadFile(filepath.Join(n.dir, "node.log"))
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// members returns the current members.
func (c *cluster) members() []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*node(nil), c.nodes...)
}

// endpoints returns the client proxies of the current members and the
// version of that list.
func (c *cluster) endpoints() ([]string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.apiProxy.Addr())
	}
	return out, c.endpointsVersion
}

// liveClient is a client of the current members' client proxies, made
// again when the members change (a removed member's proxy is gone, a new
// member's would be missed). Not safe for concurrent use.
type liveClient struct {
	c        *cluster
	rotate   int // the endpoint to start at, so that load spreads
	retryFor time.Duration
	cl       *client.Client
	version  int
}

// get returns the client for the current members.
func (l *liveClient) get() *client.Client {
	eps, version := l.c.endpoints()
	if l.cl != nil && version == l.version {
		return l.cl
	}
	l.close()
	r := l.rotate % len(eps)
	cl, err := client.New(client.Config{Endpoints: append(eps[r:], eps[:r]...), RequestTimeout: 5 * time.Second, RetryFor: l.retryFor})
	if err != nil {
		panic(err) // only an empty list fails, and a cluster always has members
	}
	l.cl, l.version = cl, version
	return cl
}

func (l *liveClient) close() {
	if l.cl != nil {
		_ = l.cl.Close()
		l.cl = nil
	}
}

// leader returns the member that says it is the leader, in the highest
// term any member reports; nil when none does.
func (c *cluster) leader(ctx context.Context) *node {
	var best *node
	var bestTerm uint64
	for _, n := range c.members() {
		state, _, term, err := n.status(ctx)
		if err == nil && state == "Leader" && (best == nil || term > bestTerm) {
			best, bestTerm = n, term
		}
	}
	return best
}

// waitLeader polls until a member is leader.
func (c *cluster) waitLeader(timeout time.Duration) (*node, error) {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l := c.leader(ctx)
		cancel()
		if l != nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no leader after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// notReadyError names the members that were not ready when time ran out.
type notReadyError struct {
	ids     []string
	timeout time.Duration
}

func (e *notReadyError) Error() string {
	return fmt.Sprintf("members %v not ready after %s", e.ids, e.timeout)
}

// waitHealthy polls until every member runs, is ready, and one is leader;
// otherwise it fails with a *notReadyError.
func (c *cluster) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var notReady []string
		for _, n := range c.members() {
			if !n.ready() {
				notReady = append(notReady, n.id)
			}
		}
		if len(notReady) == 0 {
			if _, err := c.waitLeader(time.Until(deadline)); err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return &notReadyError{ids: notReady, timeout: timeout}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restartAll kills every member at once and starts them again.
func (c *cluster) restartAll() error {
	ms := c.members()
	var wg sync.WaitGroup
	for _, n := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); n.kill() }()
	}
	wg.Wait()
	for _, n := range ms {
		if err := n.start(c.bin); err != nil {
			return err
		}
	}
	return nil
}

// replace removes member old from the cluster (through the cluster API,
// under load), stops it, and adds a fresh node in its place that joins
// through the remaining members.
func (c *cluster) replace(old *node) (*node, error) {
	var rest []*node
	for _, n := range c.members() {
		if n != old {
			rest = append(rest, n)
		}
	}
	cl := c.adminOf(rest)
	defer cl.Close()
	if err := retry(30*time.Second, func(ctx context.Context) error {
		return cl.RemoveMember(ctx, old.id)
	}, client.ErrNotFound); err != nil {
		return nil, fmt.Errorf("remove %s: %w", old.id, err)
	}
	old.kill()
	c.mu.Lock()
	c.nodes = rest
	c.endpointsVersion++
	c.mu.Unlock()
	old.close()
	fresh, err := c.newNode()
	if err != nil {
		return nil, err
	}
	for _, n := range rest {
		fresh.args = append(fresh.args, "--join", n.grpcAddr)
	}
	if err := fresh.start(c.bin); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, fresh)
	sort.Slice(c.nodes, func(i, j int) bool { return c.nodes[i].id < c.nodes[j].id })
	c.endpointsVersion++
	c.mu.Unlock()
	return fresh, nil
}

// retry runs f until it succeeds, fails with one of ok, or timeout
// passes.
func retry(timeout time.Duration, f func(ctx context.Context) error, ok ...error) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := f(ctx)
		cancel()
		if err == nil {
			return nil
		}
		for _, e := range ok {
			if errors.Is(err, e) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop kills every process and closes every proxy.
func (c *cluster) stop() {
	for _, n := range c.members() {
		n.kill()
		n.close()
	}
}

// cleanEnv is the environment without CAIRN_* variables, which would
// change how the nodes run.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			out = append(out, kv)
		}
	}
	return out
}
