package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// watchRecorder collects a watch stream's change messages.
type watchRecorder struct {
	mu     sync.Mutex
	resps  []*cairnv1.WatchResponse
	err    error
	done   chan struct{}
	cancel context.CancelFunc
}

func startWatch(t testing.TB, n *testNode, req *cairnv1.WatchRequest) *watchRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := n.watch().Watch(ctx, req)
	if err != nil {
		t.Fatalf("Watch via %s: %v", n.id, err)
	}
	first, err := stream.Recv()
	if err != nil || !first.Created {
		t.Fatalf("Watch via %s: first message %v, %v; want created", n.id, first, err)
	}
	w := &watchRecorder{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.done)
		for {
			resp, err := stream.Recv()
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				return
			}
			if !resp.Progress {
				w.resps = append(w.resps, resp)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watchRecorder) snapshot() ([]*cairnv1.WatchResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*cairnv1.WatchResponse(nil), w.resps...), w.err
}

func (w *watchRecorder) lastRevision() uint64 {
	resps, _ := w.snapshot()
	if len(resps) == 0 {
		return 0
	}
	return resps[len(resps)-1].Revision
}

func (n *testNode) watch() cairnv1.WatchServiceClient { return cairnv1.NewWatchServiceClient(n.conn) }

// checkOrdered fails unless revisions strictly increase (no duplicates).
func checkOrdered(t *testing.T, who string, resps []*cairnv1.WatchResponse) {
	t.Helper()
	var last uint64
	for _, r := range resps {
		if r.Revision <= last {
			t.Fatalf("%s: revision %d after %d", who, r.Revision, last)
		}
		last = r.Revision
	}
}

// TestWatchEveryNode: writes through all three nodes while watchers on
// each node record; every watcher sees every revision of its scope
// exactly once, in order, with a transaction's events together; a
// watcher resumed after a disconnect continues without gap or duplicate.
func TestWatchEveryNode(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	nodes := c.running()
	mustPutNamespace(t, nodes[0], "wn")
	var nsWatchers, objWatchers []*watchRecorder
	for _, n := range nodes {
		nsWatchers = append(nsWatchers, startWatch(t, n, &cairnv1.WatchRequest{Namespace: "wn"}))
		objWatchers = append(objWatchers, startWatch(t, n, &cairnv1.WatchRequest{Namespace: "wn", Object: "o1", Prefix: "k"}))
	}
	// A watcher that will be disconnected halfway and resumed.
	resumable := startWatch(t, nodes[1], &cairnv1.WatchRequest{Namespace: "wn"})

	revs := map[uint64]int{}    // every write's revision -> events it made
	o1revs := map[uint64]bool{} // revisions that touched o1 keys starting with k
	var mu sync.Mutex
	var wg sync.WaitGroup
	for wi, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				obj := fmt.Sprintf("o%d", i%3)
				switch i % 4 {
				case 0, 1:
					r := mustPutKey(t, n, "wn", obj, fmt.Sprintf("k%d-%d", wi, i), i)
					mu.Lock()
					revs[r.Revision] = 1
					if obj == "o1" {
						o1revs[r.Revision] = true
					}
					mu.Unlock()
				case 2: // a transaction of two objects: its events come together
					resp, err := n.objects().Txn(testCtx(t), &cairnv1.TxnRequest{Namespace: "wn", Success: []*cairnv1.TxnOp{
						{Op: &cairnv1.TxnOp_Put{Put: &cairnv1.PutOp{Object: "o1", Key: fmt.Sprintf("k-t%d-%d", wi, i), Content: &cairnv1.PutOp_Value{Value: numberValue(1)}}}},
						{Op: &cairnv1.TxnOp_Put{Put: &cairnv1.PutOp{Object: "o2", Key: fmt.Sprintf("t%d-%d", wi, i), Content: &cairnv1.PutOp_Value{Value: numberValue(2)}}}},
					}})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					revs[resp.Revision] = 2
					o1revs[resp.Revision] = true
					mu.Unlock()
				case 3:
					r, err := n.objects().DeleteKey(testCtx(t), &cairnv1.DeleteKeyRequest{Namespace: "wn", Object: obj, Key: fmt.Sprintf("k%d-%d", wi, i-3)})
					if err != nil {
						t.Error(err)
						return
					}
					if r.Deleted {
						mu.Lock()
						revs[r.Revision] = 1
						if obj == "o1" {
							o1revs[r.Revision] = true
						}
						mu.Unlock()
					}
				}
				if wi == 1 && i == 20 {
					resumable.cancel()
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var last uint64
	for r := range revs {
		last = max(last, r)
	}
	<-resumable.done
	before, _ := resumable.snapshot()
	resumed := startWatch(t, nodes[2], &cairnv1.WatchRequest{Namespace: "wn", StartRevision: resumable.lastRevision() + 1})
	var lastO1 uint64
	for r := range o1revs {
		lastO1 = max(lastO1, r)
	}
	for _, w := range append(nsWatchers, resumed) {
		waitFor(t, waitLong, "namespace watchers to reach the last write", func() bool {
			return w.lastRevision() >= last || w == resumed && len(before) > 0 && before[len(before)-1].Revision >= last
		})
	}
	for _, w := range objWatchers {
		waitFor(t, waitLong, "object watchers to reach the last write to o1", func() bool { return w.lastRevision() >= lastO1 })
	}
	check := func(who string, resps []*cairnv1.WatchResponse, want map[uint64]bool) {
		t.Helper()
		checkOrdered(t, who, resps)
		got := map[uint64]bool{}
		for _, r := range resps {
			got[r.Revision] = true
			if want[r.Revision] && strings.HasPrefix(who, "namespace") && len(r.Events) != revs[r.Revision] {
				t.Fatalf("%s: revision %d has %d events, want %d together", who, r.Revision, len(r.Events), revs[r.Revision])
			}
			if !want[r.Revision] {
				t.Fatalf("%s: unexpected revision %d", who, r.Revision)
			}
		}
		for r := range want {
			if !got[r] {
				t.Fatalf("%s: missed revision %d", who, r)
			}
		}
	}
	wantAll := map[uint64]bool{}
	for r := range revs {
		wantAll[r] = true
	}
	for i, w := range nsWatchers {
		resps, _ := w.snapshot()
		check(fmt.Sprintf("namespace watcher on %s", nodes[i].id), resps, wantAll)
	}
	for i, w := range objWatchers {
		resps, _ := w.snapshot()
		check(fmt.Sprintf("object watcher on %s", nodes[i].id), resps, o1revs)
	}
	after, _ := resumed.snapshot()
	check("namespace watcher resumed", append(before, after...), wantAll)
}

// TestWatchCompactedAndProgress: a start revision older than the
// retained history is OUT_OF_RANGE naming the oldest retained revision;
// an idle watcher gets progress messages with its position.
func TestWatchCompactedAndProgress(t *testing.T) {
	c := &testCluster{}
	cfg := c.nodeConfig("solo", t.TempDir())
	cfg.Bootstrap = true
	cfg.History = HistoryConfig{MaxRevisions: 20}
	n := c.mustStart(t, "solo", cfg)
	t.Cleanup(c.stopAll)
	c.waitStable(t)
	mustPutNamespace(t, n, "wc")
	for i := 0; i < 50; i++ {
		mustPutKey(t, n, "wc", "o", fmt.Sprint(i), i)
	}
	_, oldest := n.Server.hub.Current()
	stream, err := n.watch().Watch(testCtx(t), &cairnv1.WatchRequest{Namespace: "wc", StartRevision: 1})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.OutOfRange, "oldest retained revision", fmt.Sprint(oldest))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err = n.watch().Watch(ctx, &cairnv1.WatchRequest{Namespace: "wc", ProgressIntervalMs: 100})
	if err != nil {
		t.Fatal(err)
	}
	created, err := stream.Recv()
	if err != nil || !created.Created {
		t.Fatalf("first message: %v %v", created, err)
	}
	progress, err := stream.Recv()
	if err != nil || !progress.Progress || progress.Revision != n.FSM.AppliedIndex() {
		t.Fatalf("idle watcher: %v %v; want progress at %d", progress, err, n.FSM.AppliedIndex())
	}
	_, err = n.watch().Watch(testCtx(t), &cairnv1.WatchRequest{Namespace: "wc", ProgressIntervalMs: 10})
	if err == nil {
		_, err = func() (*cairnv1.WatchResponse, error) {
			s, _ := n.watch().Watch(testCtx(t), &cairnv1.WatchRequest{Namespace: "wc", ProgressIntervalMs: 10})
			return s.Recv()
		}()
	}
	wantCode(t, err, codes.InvalidArgument, "progress_interval_ms", "100")
}

// TestWatchSlowConsumer: a watcher that never reads does not make the
// node hold more than its history bound, and when it reads again its
// stream ends with a clear error instead of a silent gap.
func TestWatchSlowConsumer(t *testing.T) {
	c := &testCluster{}
	cfg := c.nodeConfig("solo", t.TempDir())
	cfg.Bootstrap = true
	cfg.History = HistoryConfig{MaxBytes: 1 << 20}
	n := c.mustStart(t, "solo", cfg)
	t.Cleanup(c.stopAll)
	c.waitStable(t)
	mustPutNamespace(t, n, "ws")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := n.watch().Watch(ctx, &cairnv1.WatchRequest{Namespace: "ws"})
	if err != nil {
		t.Fatal(err)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	value := &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: make([]byte, 16<<10)}
	for i := 0; i < 2000; i++ { // 32 MiB written, never read by the watcher
		if _, err := n.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{Namespace: "ws", Object: "o", Key: fmt.Sprint(i % 50), Content: value}); err != nil {
			t.Fatal(err)
		}
	}
	revisions, bytes := n.Server.hub.retainedBytes()
	if bytes > 1<<20 {
		t.Fatalf("history holds %d bytes in %d revisions, bound is 1 MiB", bytes, revisions)
	}
	// A read commits the writes that wait in the state machine's write
	// transaction (up to 16 MiB of them: fsm.commitBytes), which are not
	// the watcher's to count.
	mustGetKey(t, n, "ws", "o", "0", Linearizable)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// HeapAlloc: the live objects after a GC, what the node holds
	// (HeapInuse also counts the free room in partly used spans, which
	// moves with the sizes of unrelated allocations). Most of the growth is
	// Raft's cache of the last 512 entries (raftnode.logCacheEntries).
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Fatalf("heap grew by %d bytes while a watcher did not read 32 MiB of changes", grew)
	}
	// Reading again: the stream ends with an error naming what to do.
	for {
		resp, err := stream.Recv()
		if err != nil {
			code := status.Code(err)
			if code != codes.OutOfRange && code != codes.ResourceExhausted {
				t.Fatalf("slow watcher ended with %v, want OUT_OF_RANGE or RESOURCE_EXHAUSTED", err)
			}
			if !strings.Contains(err.Error(), "revision") {
				t.Fatalf("slow watcher's error %q names no revision", err)
			}
			return
		}
		_ = resp
	}
}

// TestWatchEndsOnShutdown: stopping a node ends its streams with
// UNAVAILABLE and the revision to resume from.
func TestWatchEndsOnShutdown(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	f := c.followers(t)[0]
	mustPutNamespace(t, f, "wd")
	// A connection of its own: stopping the node closes the test's.
	conn, err := grpc.NewClient(f.Server.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := startWatch(t, &testNode{id: f.id, conn: conn}, &cairnv1.WatchRequest{Namespace: "wd"})
	mustPutKey(t, f, "wd", "o", "k", 1)
	waitFor(t, waitLong, "the watcher to see the write", func() bool { return w.lastRevision() > 0 })
	f.stop()
	<-w.done
	_, err = w.snapshot()
	if code := status.Code(err); code != codes.Unavailable {
		t.Fatalf("stream ended with %v, want UNAVAILABLE", err)
	}
}

// sseMessage is one Server-Sent Events message.
type sseMessage struct {
	event, id, data string
}

// readSSE reads messages from r until it ends or stop returns true.
func readSSE(r io.Reader, stop func(sseMessage) bool) ([]sseMessage, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 4<<20)
	var out []sseMessage
	var m sseMessage
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if m.data != "" {
				out = append(out, m)
				if stop(m) {
					return out, nil
				}
			}
			m = sseMessage{}
		case strings.HasPrefix(line, "event: "):
			m.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			m.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			m.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return out, sc.Err()
}

// TestWatchSSE: the event-stream form delivers changes with their
// revision as id, and a reconnect with Last-Event-ID continues with no gap
// and no duplicate.
func TestWatchSSE(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	f := c.followers(t)[0]
	mustPutNamespace(t, f, "sse")
	var revs []uint64
	for i := 0; i < 10; i++ {
		revs = append(revs, mustPutKey(t, f, "sse", "room", fmt.Sprint(i), i).Revision)
	}
	get := func(lastEventID string, until uint64) []sseMessage {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("http://%s/v1/namespaces/sse/objects/room:watch?start_revision=%d", f.Server.HTTPAddr(), revs[0]), nil)
		req.Header.Set("Accept", "text/event-stream")
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("SSE: HTTP %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		msgs, err := readSSE(resp.Body, func(m sseMessage) bool {
			id, _ := strconv.ParseUint(m.id, 10, 64)
			return m.event == "" && id >= until
		})
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
	var seen []uint64
	record := func(msgs []sseMessage) {
		for _, m := range msgs {
			if m.event != "" {
				continue
			}
			var resp cairnv1.WatchResponse
			if err := protojson.Unmarshal([]byte(m.data), &resp); err != nil {
				t.Fatalf("SSE data %q: %v", m.data, err)
			}
			if id := fmt.Sprint(resp.Revision); id != m.id {
				t.Fatalf("SSE id %s for revision %s", m.id, id)
			}
			seen = append(seen, resp.Revision)
		}
	}
	first := get("", revs[4])
	record(first)
	for i := 5; i < 8; i++ {
		revs = append(revs, mustPutKey(t, f, "sse", "room", fmt.Sprint(i+10), i).Revision)
	}
	record(get(first[len(first)-1].id, revs[len(revs)-1]))
	want := append([]uint64(nil), revs...)
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("SSE delivered revisions %v, want %v", seen, want)
	}
}

// TestWatchEndsOnSnapshotInstall: a follower that falls behind the
// leader's compacted log catches up by installing a snapshot; its watch
// streams end with UNAVAILABLE (resume elsewhere: other members still
// hold the history), not with OUT_OF_RANGE (compacted: read the state
// again), which the client does not resume from. Found by the
// fault-injection harness (test/chaos): watchers on a node that came back
// from a partition lost their streams although the cluster held every
// revision they needed.
func TestWatchEndsOnSnapshotInstall(t *testing.T) {
	nw := newNetwork()
	c := mustStartCluster(t, 3, clusterOptions{SnapshotThreshold: 64, TrailingLogs: 16, Configure: func(id string, cfg *NodeConfig) {
		cfg.Raft.Dial = nw.dialer(id)
	}})
	for _, n := range c.running() {
		nw.mu.Lock()
		nw.addrs[n.Node.RaftAddr()] = n.id
		nw.mu.Unlock()
	}
	leader := c.leader(t)
	f := c.followers(t)[0]
	mustPutNamespace(t, leader, "wi")
	mustPutKey(t, leader, "wi", "o", "k", 0)
	waitFor(t, waitLong, "the follower to apply the write", func() bool { return f.FSM.AppliedIndex() >= leader.FSM.AppliedIndex() })
	w := startWatch(t, f, &cairnv1.WatchRequest{Namespace: "wi"})

	nw.isolate(f.id)
	for i := 1; i <= 100; i++ {
		mustPutKey(t, leader, "wi", "o", "k", i)
	}
	for _, n := range c.running() {
		if n != f {
			if err := n.Node.Snapshot(); err != nil {
				t.Fatalf("%s: Snapshot: %v", n.id, err)
			}
		}
	}
	nw.heal()
	waitFor(t, waitLong, "the follower to catch up", func() bool { return f.FSM.AppliedIndex() >= leader.FSM.AppliedIndex() })
	select {
	case <-w.done:
	case <-time.After(waitLong):
		cur, oldest := f.Server.hub.Current()
		resps, _ := w.snapshot()
		t.Fatalf("the follower installed a snapshot and its watch stream goes on (hub %d/%d, %d responses, last %d)", cur, oldest, len(resps), w.lastRevision())
	}
	_, err := w.snapshot()
	wantCode(t, err, codes.Unavailable, "replaced by a snapshot", "resume from revision")
}
