package client_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/cairndb/cairn/internal/testwait"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/client"
	"github.com/cairndb/cairn/internal/testcluster"
	"github.com/cairndb/cairn/server"
)

func mustCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	c, err := testcluster.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func mustClient(t *testing.T, endpoints []string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTypedErrors: each failure matches its sentinel with errors.Is.
func TestTypedErrors(t *testing.T) {
	cl := mustCluster(t)
	c := mustClient(t, cl.Endpoints())
	ctx := context.Background()
	if _, err := c.PutNamespace(ctx, "e", &cairnv1.NamespaceSettings{MaxObjectBytes: 100}); err != nil {
		t.Fatal(err)
	}
	put, err := c.Put(ctx, "e", "o", "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	_, getErr := c.Get(ctx, "e", "o", "missing")
	_, casErr := c.Put(ctx, "e", "o", "k", "w", client.IfModRevision(put.Revision+100))
	_, invErr := c.Put(ctx, "e", "o", strings.Repeat("k", 3000), "v")
	_, quotaErr := c.Put(ctx, "e", "o", "big", strings.Repeat("x", 200))
	_, nsErr := c.Put(ctx, "nope", "o", "k", "v")
	_, _ = c.Put(ctx, "e", "o", "r", "1", client.WithRequestID("id-1"))
	_, reuseErr := c.Put(ctx, "e", "o", "r", "2", client.WithRequestID("id-1"))
	_, notEmptyErr := c.DeleteNamespace(ctx, "e", false)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"missing key", getErr, client.ErrNotFound},
		{"stale compare", casErr, client.ErrCompareFailed},
		{"stale compare is a failed precondition", casErr, client.ErrFailedPrecondition},
		{"long key", invErr, client.ErrInvalidArgument},
		{"quota", quotaErr, client.ErrQuotaExceeded},
		{"unknown namespace", nsErr, client.ErrNotFound},
		{"reused request id", reuseErr, client.ErrRequestIDReused},
		{"namespace not empty", notEmptyErr, client.ErrFailedPrecondition},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v is not %v", tc.name, tc.err, tc.want)
		}
		var e *client.Error
		if !errors.As(tc.err, &e) || e.Message == "" {
			t.Errorf("%s: %v is not a *client.Error with a message", tc.name, tc.err)
		}
	}
	if errors.Is(notEmptyErr, client.ErrCompareFailed) {
		t.Errorf("a non-empty namespace is not a failed compare")
	}
}

// TestFailover: with the node the client talks to stopped (it was the
// leader), calls move to the others; writes retried across the failover
// keep their request ids and apply once.
func TestFailover(t *testing.T) {
	cl := mustCluster(t)
	// Put the leader first so the client starts on it.
	eps := cl.Endpoints()
	for i, n := range cl.Nodes {
		if n.Node.IsLeader() {
			eps[0], eps[i] = eps[i], eps[0]
			cl.Nodes[0], cl.Nodes[i] = cl.Nodes[i], cl.Nodes[0]
		}
	}
	c := mustClient(t, eps)
	ctx := context.Background()
	if _, err := c.PutNamespace(ctx, "f", nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := c.Put(ctx, "f", fmt.Sprintf("w%d", w), fmt.Sprintf("k%03d", i), i); err != nil {
					errs <- fmt.Errorf("writer %d put %d: %w", w, i, err)
					return
				}
				if w == 0 && i == 10 {
					cl.Nodes[0].Stop()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := 0; w < 4; w++ {
		n := 0
		for kv, err := range c.Keys(ctx, "f", fmt.Sprintf("w%d", w), client.ListOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			if kv.CreateRevision != kv.ModRevision {
				t.Fatalf("w%d/%s applied twice (create %d, mod %d)", w, kv.Key, kv.CreateRevision, kv.ModRevision)
			}
			n++
		}
		if n != 50 {
			t.Fatalf("w%d holds %d keys, want 50", w, n)
		}
	}
}

// TestFailoverFromHungEndpoint: an endpoint that accepts connections but
// never answers (a paused process, a blackholed link) costs at most the
// call that found it out; later calls go to the next endpoint. Found by
// the fault-injection harness (test/chaos): while a node was stopped with
// SIGSTOP, the clients that were on it timed out on every call until it
// resumed, although the rest of the cluster served.
func TestFailoverFromHungEndpoint(t *testing.T) {
	cl := mustCluster(t)
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	var conns []net.Conn
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	c, err := client.New(client.Config{Endpoints: []string{hung.Addr().String(), cl.Endpoints()[0]}, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.PutNamespace(ctx, "h", nil); err != nil && !errors.Is(err, client.ErrDeadlineExceeded) {
		t.Fatalf("first call, on the hung endpoint: %v", err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.PutNamespace(ctx, "h", nil); err != nil {
			t.Fatalf("call %d after the hung endpoint timed out: %v", i+2, err)
		}
	}
}

// TestWatchResumes: a watcher whose node stops resumes on another node
// and delivers every revision once, in order.
func TestWatchResumes(t *testing.T) {
	cl := mustCluster(t)
	var follower, other int
	for i, n := range cl.Nodes {
		if !n.Node.IsLeader() {
			follower = i
		}
	}
	for i, n := range cl.Nodes {
		if i != follower && !n.Node.IsLeader() {
			other = i
		}
	}
	eps := cl.Endpoints()
	c := mustClient(t, []string{eps[follower], eps[other]})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.PutNamespace(ctx, "w", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(ctx, &cairnv1.WatchRequest{Namespace: "w", Object: "o"})
	if err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := 0; i < 5; i++ {
		r, err := c.Put(ctx, "w", "o", fmt.Sprint(i), i)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r.Revision)
	}
	var got []uint64
	for len(got) < 3 {
		resp, err := w.Next(false)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.Revision)
	}
	cl.Nodes[follower].Stop()
	for i := 5; i < 10; i++ {
		r, err := c.Put(ctx, "w", "o", fmt.Sprint(i), i)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r.Revision)
	}
	for len(got) < len(want) {
		resp, err := w.Next(false)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, resp.Revision)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("watcher delivered %v, want %v", got, want)
	}
}

// TestWatchResumesPastCompactedNode: a watch that lands on a node whose
// history no longer holds its start (it restarted, installed a snapshot,
// or keeps less) resumes on another member that still holds it, instead
// of failing with ErrCompacted; only when no member holds it does it
// fail so. Found by the fault-injection harness (test/chaos): after one
// node caught up from a snapshot, every watcher that failed over to it
// lost its stream although the other members still held the revisions.
func TestWatchResumesPastCompactedNode(t *testing.T) {
	cl := mustCluster(t)
	short, err := cl.AddNode(func(cfg *server.NodeConfig) { cfg.History = server.HistoryConfig{MaxRevisions: 1} })
	if err != nil {
		t.Fatal(err)
	}
	eps := cl.Endpoints()
	full := mustClient(t, eps[:3])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := full.PutNamespace(ctx, "w", nil); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := 0; i < 5; i++ {
		r, err := full.Put(ctx, "w", "o", fmt.Sprint(i), i)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, r.Revision)
	}
	testwait.For(t, 20*time.Second, "the added node to catch up", func() bool {
		return short.FSM.AppliedIndex() >= want[len(want)-1]
	})

	only := mustClient(t, []string{short.Server.GRPCAddr()})
	if _, err := only.Watch(ctx, &cairnv1.WatchRequest{Namespace: "w", Object: "o", StartRevision: want[0]}); !errors.Is(err, client.ErrCompacted) {
		t.Fatalf("watching from %d on a node that keeps one revision: %v, want ErrCompacted", want[0], err)
	}

	c := mustClient(t, []string{short.Server.GRPCAddr(), eps[0]})
	w, err := c.Watch(ctx, &cairnv1.WatchRequest{Namespace: "w", Object: "o", StartRevision: want[0]})
	if err != nil {
		t.Fatalf("watching from %d with a member that holds it: %v", want[0], err)
	}
	var got []uint64
	for len(got) < len(want) {
		resp, err := w.Next(false)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, resp.Revision)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("watcher delivered %v, want %v", got, want)
	}
}

// TestAlarms: set, read, list, claim (pull delivery), ack and delete
// alarms through the client.
func TestAlarms(t *testing.T) {
	cl := mustCluster(t)
	c := mustClient(t, cl.Endpoints())
	ctx := context.Background()
	if _, err := c.PutNamespace(ctx, "jobs", nil); err != nil { // no webhook: pull delivery
		t.Fatal(err)
	}
	if _, err := c.SetAlarm(ctx, "jobs", "later", client.AlarmSpec{FireIn: time.Hour, Payload: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetAlarm(ctx, "jobs", "now", client.AlarmSpec{Name: "go", FireAt: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	a, err := c.Alarm(ctx, "jobs", "later", "")
	if err != nil || a.Name != "default" || string(a.Payload) != "p" {
		t.Fatalf("Alarm: %v %v", a, err)
	}
	n := 0
	for a, err := range c.Alarms(ctx, "jobs", client.AlarmFilter{State: "pending"}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		_ = a
	}
	if n != 2 {
		t.Fatalf("%d pending alarms, want 2", n)
	}
	var claimed []*cairnv1.Alarm
	testwait.For(t, 10*time.Second, "the due alarm to be claimable", func() bool {
		if claimed, err = c.ClaimAlarms(ctx, "jobs", "worker-1", 10, time.Minute); err != nil {
			t.Fatal(err)
		}
		return len(claimed) > 0
	})
	if len(claimed) != 1 || claimed[0].Object != "now" {
		t.Fatalf("claimed %v, want the due alarm only", claimed)
	}
	resp, err := c.AckAlarms(ctx, "jobs", []*cairnv1.AlarmAck{{Object: "now", Name: "go", LeaseId: claimed[0].LeaseId, Result: &cairnv1.AlarmAck_Done{Done: true}}})
	if err != nil || resp.Results[0].Status != cairnv1.AlarmAckStatus_ALARM_ACK_STATUS_COMPLETED {
		t.Fatalf("AckAlarms: %v %v", resp, err)
	}
	if _, err := c.Alarm(ctx, "jobs", "now", "go"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("a completed alarm: %v, want ErrNotFound", err)
	}
	if deleted, err := c.DeleteAlarm(ctx, "jobs", "later", ""); err != nil || !deleted {
		t.Fatalf("DeleteAlarm: %v %v", deleted, err)
	}
}
