package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairndb/cairn/client"
)

// ackedWrite is a put the cluster acknowledged: writer obj stored value i
// under key.
type ackedWrite struct {
	obj, key string
	i        int
}

// clientLoad is several Go clients (the client package: failover between
// endpoints, retries of Unavailable, a request id on every write) writing
// keys one after another, each to its own object, recording which puts
// were acknowledged and which failed.
type clientLoad struct {
	mu     sync.Mutex
	acked  []ackedWrite
	failed []error
	quit   chan struct{}
	wg     sync.WaitGroup
}

// startClientLoad starts writers clients writing to namespace ns through
// the gRPC endpoints; writer w starts at endpoint w mod len(endpoints), so
// that some of them talk to whichever node a test stops. Stop it with stop.
func startClientLoad(t *testing.T, ns string, writers int, endpoints []string) *clientLoad {
	t.Helper()
	l := &clientLoad{quit: make(chan struct{})}
	for w := 0; w < writers; w++ {
		eps := append(append([]string(nil), endpoints[w%len(endpoints):]...), endpoints[:w%len(endpoints)]...)
		c, err := client.New(client.Config{Endpoints: eps})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		obj := fmt.Sprintf("writer-%d", w)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.quit:
					return
				default:
				}
				key := fmt.Sprintf("k/%06d", i)
				_, err := c.Put(context.Background(), ns, obj, key, i)
				l.mu.Lock()
				if err != nil {
					l.failed = append(l.failed, fmt.Errorf("put %s %s: %w", obj, key, err))
				} else {
					l.acked = append(l.acked, ackedWrite{obj, key, i})
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// ackedCount returns how many puts have been acknowledged so far.
func (l *clientLoad) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// waitProgress waits until n more puts have been acknowledged.
func (l *clientLoad) waitProgress(t *testing.T, n int, what string) {
	t.Helper()
	want := l.ackedCount() + n
	waitFor(t, 60*time.Second, fmt.Sprintf("%d more acknowledged writes %s", n, what), func() bool { return l.ackedCount() >= want })
}

// stop stops the writers and returns the acknowledged and the failed puts.
func (l *clientLoad) stop() ([]ackedWrite, []error) {
	close(l.quit)
	l.wg.Wait()
	return l.acked, l.failed
}

// checkAcked reads every writer's object through endpoints (linearizable
// listings) and fails the test for each acknowledged put whose key is
// missing or holds another value.
func checkAcked(t *testing.T, ns string, endpoints []string, acked []ackedWrite) {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stored := map[string]map[string]string{}
	for _, w := range acked {
		if stored[w.obj] != nil {
			continue
		}
		stored[w.obj] = map[string]string{}
		for kv, err := range c.Keys(context.Background(), ns, w.obj, client.ListOptions{PageSize: 1000}) {
			if err != nil {
				t.Fatalf("list %s: %v", w.obj, err)
			}
			stored[w.obj][kv.Key] = string(kv.Value)
		}
	}
	lost := 0
	for _, w := range acked {
		if got, ok := stored[w.obj][w.key]; !ok || got != strconv.Itoa(w.i) {
			if lost++; lost <= 10 {
				t.Errorf("acknowledged put %s %s = %d: stored %q (present %v)", w.obj, w.key, w.i, got, ok)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged puts lost", lost, len(acked))
	}
}

// startThreeNodes starts three `cairn serve` processes of bin (empty: this
// build) forming one cluster with --initial-cluster, each with extra
// flags, and waits until they are ready; it returns the nodes and their
// gRPC endpoints.
func startThreeNodes(t *testing.T, bin string, extra ...string) ([]*e2eNode, []string) {
	t.Helper()
	nodes, _ := newThreeNodes(t, func(int) []string { return extra })
	var endpoints []string
	for _, n := range nodes {
		n.bin = bin
		n.start(t)
		endpoints = append(endpoints, n.grpc)
	}
	waitAllReady(t, 30*time.Second, nodes...)
	return nodes, endpoints
}

// exitCode waits for p to exit and returns its exit status.
func exitCode(t *testing.T, p *proc, what string) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(40 * time.Second):
		t.Fatalf("%s: the process did not exit (its drain is bounded by 30 s)", what)
		return 0
	}
}

// handedOver matches the log line of a leader that handed leadership over
// while shutting down.
var handedOver = regexp.MustCompile(`msg="shutdown: leadership handed over" to=(\S+)`)

// TestGracefulStopLeaderUnderLoad stops the leader with SIGTERM while four
// Go clients write. The client retries only Unavailable, so a put that
// met any other error would come back failed: that every put succeeds
// proves the stop caused only retryable errors and that the retries got
// through. The stopped process logs that it handed leadership to another
// node, which it does only once it has learnt of the new leader, before
// its API drains and it exits; the other nodes then name that node as
// leader. No acknowledged write is lost.
func TestGracefulStopLeaderUnderLoad(t *testing.T) {
	nodes, endpoints := startThreeNodes(t, "", "--log-level", "info")
	const ns = "lifecycle"
	mustREST(t, http.MethodPut, nsURL(nodes[0].base(), ns), map[string]any{}, nil)
	leader := nodeByID(t, waitMembers(t, nodes[0].base(), nodes...), nodes)

	load := startClientLoad(t, ns, 4, endpoints)
	load.waitProgress(t, 100, "before the stop")
	if err := leader.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, leader.p, "SIGTERM to the leader"); code != 0 {
		t.Fatalf("the leader exited with status %d after SIGTERM, want 0\n%s", code, leader.p.out.String())
	}
	out := leader.p.out.String()
	m := handedOver.FindStringSubmatch(out)
	if m == nil || m[1] == leader.id {
		t.Fatalf("the stopped leader did not log a hand-over to another node:\n%s", out)
	}
	for _, step := range []string{`"shutdown: leadership handed over"`, `"shutdown: API drained"`, `"shutdown: complete"`} {
		i := strings.Index(out, step)
		if i < 0 || i < strings.Index(out, `"shutdown: leadership handed over"`) {
			t.Fatalf("log of the stopped leader lacks %s after the hand-over:\n%s", step, out)
		}
	}
	var others []*e2eNode
	for _, n := range nodes {
		if n != leader {
			others = append(others, n)
		}
	}
	for _, n := range others {
		waitForDetail(t, 10*time.Second, n.id+" names the new leader", func() (bool, string) {
			c, err := getCluster(n.base())
			return err == nil && c.LeaderID == m[1], fmt.Sprintf("%+v %v", c, err)
		})
	}
	load.waitProgress(t, 100, "after the stop")
	acked, failed := load.stop()
	for _, err := range failed {
		t.Errorf("a put failed: %v", err)
	}
	checkAcked(t, ns, []string{others[0].grpc, others[1].grpc}, acked)
	t.Logf("%d puts acknowledged, leadership %s -> %s", len(acked), leader.id, m[1])
}

// TestSecondSignalExitsAtOnce holds a node's drain open with a REST
// request whose body never arrives, then sends a second signal: the
// process exits at once, with a non-zero status, without waiting for the
// drain.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	ports := freePorts(t, 3)
	n := newE2ENode(t, "n1", ports[0], ports[1], ports[2], "--bootstrap", "--log-level", "info")
	n.start(t)
	waitAllReady(t, 30*time.Second, n)
	mustREST(t, http.MethodPut, nsURL(n.base(), "sig"), map[string]any{}, nil)

	conn, err := net.Dial("tcp", n.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// With Expect: 100-continue the server answers "100 Continue" only once
	// a handler reads the body: from then on the request is in flight, and
	// the first signal's drain waits for it (a signal sent before the
	// server has read the headers would find an idle connection).
	if _, err := fmt.Fprintf(conn, "PUT /v1/namespaces/sig/objects/o/keys/k HTTP/1.1\r\nHost: %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n", n.httpAddr); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, "100 Continue") {
		t.Fatalf("waiting for 100 Continue: %q, %v", status, err)
	}
	if _, err := fmt.Fprint(conn, `{"value":`); err != nil {
		t.Fatal(err)
	}
	if err := n.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the drain to start", func() bool {
		return strings.Contains(n.p.out.String(), "shutting down gracefully")
	})
	if err := n.p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code := exitCode(t, n.p, "second signal")
	out := n.p.out.String()
	if code == 0 {
		t.Fatalf("after a second signal: exit status 0, want non-zero\n%s", out)
	}
	if !strings.Contains(out, "second signal: exiting now") || strings.Contains(out, "shutdown: API drained") {
		t.Fatalf("the process did not exit during its drain on the second signal:\n%s", out)
	}
}

// TestDataDirLocked starts a second process on a running node's data
// directory: it refuses with a message naming the directory and a
// non-zero status, and the first process keeps serving.
func TestDataDirLocked(t *testing.T) {
	ports := freePorts(t, 6)
	n := newE2ENode(t, "n1", ports[0], ports[1], ports[2], "--bootstrap")
	n.start(t)
	waitAllReady(t, 30*time.Second, n)
	const ns = "locked"
	mustREST(t, http.MethodPut, nsURL(n.base(), ns), map[string]any{}, nil)
	putKey(t, n.base(), ns, "o", "before", []byte(`1`))

	dataDir := filepath.Join(n.dir, "data")
	out, err := runCairn(t, t.TempDir(), nil, "serve", "--id", "n1", "--data-dir", dataDir, "--bootstrap", "--insecure-no-auth",
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", ports[3]), "--grpc-addr", fmt.Sprintf("127.0.0.1:%d", ports[4]),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", ports[5]))
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() == 0 {
		t.Fatalf("second process on %s: %v, want a non-zero exit\n%s", dataDir, err, out)
	}
	if !strings.Contains(out, "another cairn process is using this data directory") || !strings.Contains(out, dataDir) {
		t.Fatalf("second process on the same data directory does not say why it refused:\n%s", out)
	}
	putKey(t, n.base(), ns, "o", "after", []byte(`2`))
	checkKey(t, n.base(), ns, e2eKV{"o", "before", []byte(`1`)})
	checkKey(t, n.base(), ns, e2eKV{"o", "after", []byte(`2`)})
	if !httpOK(n.base() + "/readyz") {
		t.Fatal("the first process stopped being ready")
	}
}
