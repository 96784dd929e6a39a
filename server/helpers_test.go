package server

import (
	"bytes"
	"context"
	"fmt"
	"github.com/cairndb/cairn/internal/testwait"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/raftnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// Helpers shared by the server tests: in-process clusters of real nodes
// (real Raft over TCP on 127.0.0.1, real disks in t.TempDir()), gRPC
// clients to them, and polling waits.

// Test timing: short enough for fast elections, long enough that a loaded
// machine running -race does not hold spurious ones.
const (
	testHeartbeat   = 500 * time.Millisecond
	testElection    = 500 * time.Millisecond
	testLeaderLease = 250 * time.Millisecond
	// waitLong bounds waits for elections, joins and catching up.
	waitLong = 20 * time.Second
)

// waitFor polls cond until it holds, failing the test when timeout passes
// first. what says what was awaited.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

// clusterOptions tune a test cluster.
type clusterOptions struct {
	// Durable keeps fsync on for the Raft log and the FSM.
	Durable bool
	// SnapshotThreshold and TrailingLogs are passed to raftnode.Config (0:
	// its defaults).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// Configure, when set, adjusts each node's configuration (auth, TLS)
	// after the defaults are filled in.
	Configure func(id string, cfg *NodeConfig)
}

// testNode is one node of a test cluster, with what it needs to be
// restarted.
type testNode struct {
	*RunningNode
	id      string
	dir     string
	stopped atomic.Bool // read by writer goroutines while the test stops nodes
	conn    *grpc.ClientConn
}

// testCluster is a set of nodes started in this process.
type testCluster struct {
	opts  clusterOptions
	mu    sync.Mutex
	nodes []*testNode
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// nodeConfig returns the configuration of a new node id in dir.
func (c *testCluster) nodeConfig(id, dir string) NodeConfig {
	cfg := NodeConfig{
		Dir: dir,
		Raft: raftnode.Config{
			ID:                 id,
			BindAddr:           "127.0.0.1:0",
			HeartbeatTimeout:   testHeartbeat,
			ElectionTimeout:    testElection,
			LeaderLeaseTimeout: testLeaderLease,
			SnapshotThreshold:  c.opts.SnapshotThreshold,
			TrailingLogs:       c.opts.TrailingLogs,
			NoSync:             !c.opts.Durable,
			LogOutput:          io.Discard,
			LogLevel:           "error",
		},
		Server: Config{
			GRPCAddr: "127.0.0.1:0",
			HTTPAddr: "127.0.0.1:0",
			Logger:   quietLogger(),
		},
		FSMNoSync:   !c.opts.Durable,
		JoinTimeout: waitLong,
	}
	if c.opts.Configure != nil {
		c.opts.Configure(id, &cfg)
	}
	return cfg
}

// mustStartCluster starts n nodes: node1 bootstraps, the others join
// through node1. It returns once every node knows the leader, has applied
// what is committed and every member's API addresses are published.
func mustStartCluster(t testing.TB, n int, opts clusterOptions) *testCluster {
	t.Helper()
	c := &testCluster{opts: opts}
	root := t.TempDir() // first: its removal must run after stopAll
	t.Cleanup(c.stopAll)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("node%d", i)
		cfg := c.nodeConfig(id, filepath.Join(root, id))
		if i == 1 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{c.nodes[0].Server.GRPCAddr()}
		}
		c.mustStart(t, id, cfg)
	}
	c.waitStable(t)
	return c
}

// mustAddNode starts one more node that joins through the current leader.
func (c *testCluster) mustAddNode(t testing.TB, id string) *testNode {
	t.Helper()
	cfg := c.nodeConfig(id, filepath.Join(t.TempDir(), id))
	cfg.Join = []string{c.leader(t).Server.GRPCAddr()}
	return c.mustStart(t, id, cfg)
}

func (c *testCluster) mustStart(t testing.TB, id string, cfg NodeConfig) *testNode {
	t.Helper()
	rn, err := StartNode(cfg)
	if err != nil {
		t.Fatalf("StartNode(%s): %v", id, err)
	}
	conn, err := grpc.NewClient(rn.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		rn.Stop()
		t.Fatalf("dial %s: %v", id, err)
	}
	n := &testNode{RunningNode: rn, id: id, dir: cfg.Dir, conn: conn}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

// stop stops n (once).
func (n *testNode) stop() {
	if !n.stopped.CompareAndSwap(false, true) {
		return
	}
	_ = n.conn.Close()
	n.Stop()
}

func (c *testCluster) stopAll() {
	c.mu.Lock()
	nodes := append([]*testNode(nil), c.nodes...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.stop()
		}()
	}
	wg.Wait()
}

// mustRestart starts a stopped node again on its data directory and its
// former addresses (Raft, gRPC and HTTP), without bootstrap or join.
func (c *testCluster) mustRestart(t testing.TB, n *testNode, raftAddr, grpcAddr, httpAddr string) *testNode {
	t.Helper()
	if !n.stopped.Load() {
		t.Fatalf("restart of %s, which is running", n.id)
	}
	cfg := c.nodeConfig(n.id, n.dir)
	cfg.Raft.BindAddr = raftAddr
	cfg.Server.GRPCAddr, cfg.Server.HTTPAddr = grpcAddr, httpAddr
	c.mu.Lock()
	for i, m := range c.nodes {
		if m == n {
			c.nodes = append(c.nodes[:i], c.nodes[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	return c.mustStart(t, n.id, cfg)
}

// running returns the nodes that have not been stopped.
func (c *testCluster) running() []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testNode
	for _, n := range c.nodes {
		if !n.stopped.Load() {
			out = append(out, n)
		}
	}
	return out
}

// leader waits for a leader that every running node agrees on and
// returns it.
func (c *testCluster) leader(t testing.TB) *testNode {
	t.Helper()
	var leader *testNode
	waitFor(t, waitLong, "a leader all running nodes agree on", func() bool {
		leader = nil
		nodes := c.running()
		var id string
		for i, n := range nodes {
			lid, _ := n.Node.Leader()
			if lid == "" || i > 0 && lid != id {
				return false
			}
			id = lid
		}
		for _, n := range nodes {
			if n.id == id && n.Node.IsLeader() {
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// followers returns the running nodes other than the leader.
func (c *testCluster) followers(t testing.TB) []*testNode {
	t.Helper()
	l := c.leader(t)
	var out []*testNode
	for _, n := range c.running() {
		if n != l {
			out = append(out, n)
		}
	}
	return out
}

// waitStable waits until the running nodes agree on a leader, every one
// has published its API addresses to every node, and all have applied the
// same index.
func (c *testCluster) waitStable(t testing.TB) {
	t.Helper()
	c.leader(t)
	nodes := c.running()
	waitFor(t, waitLong, "every member's addresses published on every node", func() bool {
		for _, n := range nodes {
			members, err := n.FSM.Members()
			if err != nil {
				return false
			}
			published := map[string]bool{}
			for _, m := range members {
				published[m.Id] = m.GrpcAddr != "" && m.HttpAddr != ""
			}
			for _, m := range nodes {
				if !published[m.id] {
					return false
				}
			}
		}
		return true
	})
	c.waitConverged(t)
}

// waitConverged waits until every running node has applied the leader's
// applied index and returns that index. Call it when no writes are in
// flight.
func (c *testCluster) waitConverged(t testing.TB) uint64 {
	t.Helper()
	leader := c.leader(t)
	var want uint64
	waitFor(t, waitLong, "every node to apply the leader's applied index", func() bool {
		want = leader.FSM.AppliedIndex()
		for _, n := range c.running() {
			if n.FSM.AppliedIndex() != want || !n.Node.CaughtUp() {
				return false
			}
		}
		return leader.FSM.AppliedIndex() == want
	})
	return want
}

// mustStateHash waits for the nodes to converge, checks that they all
// hold the same state and returns its hash.
func (c *testCluster) mustStateHash(t testing.TB) []byte {
	t.Helper()
	c.waitConverged(t)
	var first []byte
	for i, n := range c.running() {
		h, err := n.FSM.Hash()
		if err != nil {
			t.Fatalf("%s: Hash: %v", n.id, err)
		}
		if i == 0 {
			first = h
		} else if !bytes.Equal(h, first) {
			t.Fatalf("%s holds state %x, %s holds %x at the same applied index", n.id, h, c.running()[0].id, first)
		}
	}
	return first
}

func (n *testNode) objects() cairnv1.ObjectServiceClient {
	return cairnv1.NewObjectServiceClient(n.conn)
}
func (n *testNode) namespaces() cairnv1.NamespaceServiceClient {
	return cairnv1.NewNamespaceServiceClient(n.conn)
}
func (n *testNode) cluster() cairnv1.ClusterServiceClient {
	return cairnv1.NewClusterServiceClient(n.conn)
}

// testCtx returns a context bounded for one test RPC.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// retryUnavailable calls f until it returns anything but Unavailable, for
// at most waitLong. Unavailable means no leader could take the request
// (an election is running, which a loaded machine may cause at any time),
// or that the outcome is unknown; the callers' requests are idempotent in
// their effect on the state, so trying again is safe.
func retryUnavailable(t testing.TB, what string, f func() error) error {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		err := f()
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			return err
		}
		t.Logf("%s: %v; trying again", what, err)
		pause := time.NewTimer(20 * time.Millisecond)
		<-pause.C
	}
}

func mustPutNamespace(t testing.TB, n *testNode, ns string) *cairnv1.PutNamespaceResponse {
	t.Helper()
	var resp *cairnv1.PutNamespaceResponse
	id := testRequestID()
	err := retryUnavailable(t, "PutNamespace "+ns, func() (err error) {
		resp, err = n.namespaces().PutNamespace(testCtx(t), &cairnv1.PutNamespaceRequest{Namespace: ns, RequestId: id})
		return err
	})
	if err != nil {
		t.Fatalf("PutNamespace(%q) via %s: %v", ns, n.id, err)
	}
	return resp
}

// jsonValue converts a Go value (nil, bool, float64, string, []any,
// map[string]any) to a protobuf Value.
func jsonValue(t testing.TB, v any) *structpb.Value {
	t.Helper()
	pv, err := structpb.NewValue(v)
	if err != nil {
		t.Fatalf("structpb.NewValue(%v): %v", v, err)
	}
	return pv
}

func mustPutKey(t testing.TB, n *testNode, ns, object, key string, v any) *cairnv1.PutKeyResponse {
	t.Helper()
	value := jsonValue(t, v)
	var resp *cairnv1.PutKeyResponse
	id := testRequestID() // retries after an unknown outcome apply once
	err := retryUnavailable(t, "PutKey "+key, func() (err error) {
		resp, err = n.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{
			Namespace: ns, Object: object, Key: key, RequestId: id,
			Content: &cairnv1.PutKeyRequest_Value{Value: value},
		})
		return err
	})
	if err != nil {
		t.Fatalf("PutKey(%s/%s/%q) via %s: %v", ns, object, key, n.id, err)
	}
	return resp
}

func mustGetKey(t testing.TB, n *testNode, ns, object, key, consistency string) *cairnv1.GetKeyResponse {
	t.Helper()
	var resp *cairnv1.GetKeyResponse
	err := retryUnavailable(t, "GetKey "+key, func() (err error) {
		resp, err = n.objects().GetKey(testCtx(t), &cairnv1.GetKeyRequest{Namespace: ns, Object: object, Key: key, Consistency: consistency})
		return err
	})
	if err != nil {
		t.Fatalf("GetKey(%s/%s/%q, %s) via %s: %v", ns, object, key, consistency, n.id, err)
	}
	return resp
}

// wantCode fails unless err is a status with code, whose message holds
// every one of parts.
func wantCode(t testing.TB, err error, code codes.Code, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a gRPC status", err, err)
	}
	if st.Code() != code {
		t.Fatalf("got %s (%q), want %s", st.Code(), st.Message(), code)
	}
	for _, p := range parts {
		if !strings.Contains(st.Message(), p) {
			t.Fatalf("message %q does not mention %q", st.Message(), p)
		}
	}
}

var testRequests atomic.Int64

// testRequestID returns a request id unique in this test binary, for
// writes the helpers retry.
func testRequestID() string {
	return fmt.Sprintf("test-%d-%d", time.Now().UnixNano(), testRequests.Add(1))
}
