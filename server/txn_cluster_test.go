package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// casIncrement adds one to the counter at (ns, object, key) through node n
// with a compare-and-set retry loop. Odd clients use a transaction whose
// failure branch returns the current value; even clients use a
// conditional put after a linearizable read. A write whose outcome is
// unknown (Unavailable) is sent again unchanged under its request id, so
// that one that did apply is answered from memory instead of being
// counted again; a new compare gets a new id. It returns the attempts
// made.
func casIncrement(ctx context.Context, n *testNode, client int, ns, object, key string) (int, error) {
	cur, rev := 0.0, uint64(0)
	if client%2 == 0 {
		if err := readCounter(ctx, n, ns, object, key, &cur, &rev); err != nil {
			return 0, err
		}
	}
	id := testRequestID()
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return attempt, ctx.Err()
		}
		next := &cairnv1.PutOp{Object: object, Key: key, Content: &cairnv1.PutOp_Value{Value: numberValue(cur + 1)}}
		if client%2 == 1 {
			resp, err := n.objects().Txn(ctx, &cairnv1.TxnRequest{
				Namespace: ns,
				Compares:  []*cairnv1.Compare{{Object: object, Key: key, Target: &cairnv1.Compare_ModRevision{ModRevision: rev}}},
				Success:   []*cairnv1.TxnOp{{Op: &cairnv1.TxnOp_Put{Put: next}}},
				Failure:   []*cairnv1.TxnOp{{Op: &cairnv1.TxnOp_Get{Get: &cairnv1.GetOp{Object: object, Key: key}}}},
				RequestId: id,
			})
			if status.Code(err) == codes.Unavailable {
				continue // outcome unknown: the same request again, under the same id
			}
			if err != nil {
				return attempt, err
			}
			if resp.Succeeded {
				return attempt, nil
			}
			kv := resp.Results[0].GetGet().GetKv()
			cur, rev, id = kv.GetValue().GetNumberValue(), kv.GetModRevision(), testRequestID()
			continue
		}
		expected := rev
		_, err := n.objects().PutKey(ctx, &cairnv1.PutKeyRequest{
			Namespace: ns, Object: object, Key: key, Content: &cairnv1.PutKeyRequest_Value{Value: next.GetValue()},
			ExpectedModRevision: &expected, RequestId: id,
		})
		switch status.Code(err) {
		case codes.OK:
			return attempt, nil
		case codes.Unavailable:
			// Outcome unknown: the same request again, under the same id.
		case codes.FailedPrecondition:
			if err := readCounter(ctx, n, ns, object, key, &cur, &rev); err != nil {
				return attempt, err
			}
			id = testRequestID()
		default:
			return attempt, err
		}
	}
}

func readCounter(ctx context.Context, n *testNode, ns, object, key string, cur *float64, rev *uint64) error {
	for {
		resp, err := n.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: ns, Object: object, Key: key})
		switch status.Code(err) {
		case codes.OK:
			*cur, *rev = resp.GetValue().GetNumberValue(), resp.ModRevision
			return nil
		case codes.NotFound:
			*cur, *rev = 0, 0
			return nil
		case codes.Unavailable:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue
		}
		return err
	}
}

// TestLostUpdate: 8 clients spread over the three nodes each increment
// one counter 200 times with compare-and-set; no increment may be lost.
func TestLostUpdate(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	nodes := c.running()
	mustPutNamespace(t, nodes[0], "counters")
	const clients, increments = 8, 200
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var attempts atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[i%len(nodes)]
			for j := 0; j < increments; j++ {
				a, err := casIncrement(ctx, n, i, "counters", "c", "n")
				attempts.Add(int64(a))
				if err != nil {
					errs <- fmt.Errorf("client %d via %s, increment %d: %w", i, n.id, j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, n := range nodes {
		got := mustGetKey(t, n, "counters", "c", "n", "")
		if v := got.GetValue().GetNumberValue(); v != clients*increments {
			t.Fatalf("%s: counter is %v after %d increments", n.id, v, clients*increments)
		}
	}
	t.Logf("%d increments took %d attempts", clients*increments, attempts.Load())
	c.mustStateHash(t)
}

// TestExactlyOnceRetry: a write whose answer is lost and that is retried
// with the same request id, through another node, is applied once and
// answered with the first result; the same id for another request is
// refused; a different namespace has its own ids.
func TestExactlyOnceRetry(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	nodes := c.running()
	mustPutNamespace(t, nodes[0], "eo")
	mustPutNamespace(t, nodes[0], "eo2")
	put := func(n *testNode, ns, value, id string) (*cairnv1.PutKeyResponse, error) {
		return n.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{
			Namespace: ns, Object: "o", Key: "k", RequestId: id,
			Content: &cairnv1.PutKeyRequest_Value{Value: jsonValue(t, value)},
		})
	}
	first, err := put(nodes[1], "eo", "v1", "req-1")
	if err != nil || first.Header.Replayed {
		t.Fatalf("first put: %v, replayed %v", err, first.GetHeader().GetReplayed())
	}
	// The answer is "lost"; the client retries through other nodes.
	for _, n := range []*testNode{nodes[2], nodes[0]} {
		again, err := put(n, "eo", "v1", "req-1")
		if err != nil {
			t.Fatalf("retry via %s: %v", n.id, err)
		}
		if !again.Header.Replayed || again.Revision != first.Revision || again.Created != first.Created {
			t.Fatalf("retry via %s: %+v, want the first answer %+v replayed", n.id, again, first)
		}
	}
	got := mustGetKey(t, nodes[0], "eo", "o", "k", "")
	if got.ModRevision != first.Revision || got.CreateRevision != first.Revision {
		t.Fatalf("key has revisions %d/%d, want the first write's %d: applied more than once", got.CreateRevision, got.ModRevision, first.Revision)
	}
	_, err = put(nodes[1], "eo", "other", "req-1")
	wantCode(t, err, codes.AlreadyExists, "req-1")
	if got2 := mustGetKey(t, nodes[0], "eo", "o", "k", ""); got2.ModRevision != first.Revision || got2.GetValue().GetStringValue() != "v1" {
		t.Fatalf("refused reuse changed the key: %+v", got2)
	}
	other, err := put(nodes[1], "eo2", "v1", "req-1")
	if err != nil || other.Header.Replayed {
		t.Fatalf("same id in another namespace: %v, replayed %v", err, other.GetHeader().GetReplayed())
	}
}

// TestExactlyOnceAcrossLeaderLoss: eight writers send writes with request
// ids through followers, retrying every failure with the same id, while
// the leader is stopped. Each write creates its own key: applied twice, a
// key's mod_revision would differ from its create_revision.
func TestExactlyOnceAcrossLeaderLoss(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{Durable: true})
	leader := c.leader(t)
	var via []*testNode
	for _, n := range c.running() {
		if n != leader {
			via = append(via, n)
		}
	}
	mustPutNamespace(t, via[0], "seq")
	const writers, writes = 8, 40
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var done, retries atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := via[w%len(via)]
			object := fmt.Sprintf("w%d", w)
			for i := 0; i < writes; i++ {
				req := &cairnv1.TxnRequest{
					Namespace: "seq", RequestId: fmt.Sprintf("w%d-%d", w, i),
					Success: []*cairnv1.TxnOp{{Op: &cairnv1.TxnOp_Put{Put: &cairnv1.PutOp{
						Object: object, Key: fmt.Sprintf("e/%04d", i), Content: &cairnv1.PutOp_Value{Value: numberValue(float64(i))},
					}}}},
				}
				for {
					_, err := n.objects().Txn(ctx, req)
					if err == nil {
						break
					}
					if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded || ctx.Err() != nil {
						errs <- fmt.Errorf("writer %d write %d: %w", w, i, err)
						return
					}
					retries.Add(1)
				}
				done.Add(1)
			}
		}()
	}
	waitFor(t, waitLong, "writes to be under way", func() bool { return done.Load() >= writers*writes/4 })
	leader.stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	survivor := via[0]
	for w := 0; w < writers; w++ {
		object := fmt.Sprintf("w%d", w)
		var list *cairnv1.ListKeysResponse
		err := retryUnavailable(t, "ListKeys", func() (err error) {
			list, err = survivor.objects().ListKeys(testCtx(t), &cairnv1.ListKeysRequest{Namespace: "seq", Object: object, Limit: 1000})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Kvs) != writes {
			t.Fatalf("%s holds %d entries, want %d", object, len(list.Kvs), writes)
		}
		for _, kv := range list.Kvs {
			if kv.CreateRevision != kv.ModRevision {
				t.Fatalf("%s/%s written twice (create %d, mod %d)", object, kv.Key, kv.CreateRevision, kv.ModRevision)
			}
		}
	}
	t.Logf("%d writes, %d client retries", writers*writes, retries.Load())
}

// TestRequestIDExpires: once the retention window has passed in log time,
// the same request id is a fresh request.
func TestRequestIDExpires(t *testing.T) {
	c := &testCluster{}
	cfg := c.nodeConfig("solo", t.TempDir())
	cfg.Bootstrap = true
	cfg.Server.RequestRetention = 300 * time.Millisecond
	n := c.mustStart(t, "solo", cfg)
	t.Cleanup(c.stopAll)
	c.waitStable(t)
	mustPutNamespace(t, n, "exp")
	req := &cairnv1.PutKeyRequest{Namespace: "exp", Object: "o", Key: "k", RequestId: "r", Content: &cairnv1.PutKeyRequest_Value{Value: numberValue(1)}}
	first, err := n.objects().PutKey(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	start := n.FSM.Now()
	// Log time moves only with new entries: write until it has passed the
	// window.
	waitFor(t, waitLong, "log time to pass the retention window", func() bool {
		// A write without a request id, so that it leaves no record.
		if _, err := n.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{Namespace: "exp", Object: "tick", Key: "t",
			Content: &cairnv1.PutKeyRequest_Value{Value: numberValue(0)}}); err != nil {
			t.Fatal(err)
		}
		return n.FSM.Now() > start+300
	})
	again, err := n.objects().PutKey(testCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Header.Replayed || again.Revision == first.Revision {
		t.Fatalf("retry after the window: %+v, want a fresh write", again)
	}
	if records, err := n.FSM.RequestRecords(); err != nil || records != 1 {
		t.Fatalf("request records: %d, %v; want the expired one removed and the new one kept", records, err)
	}
}

// numberValue is a JSON number.
func numberValue(f float64) *structpb.Value { return structpb.NewNumberValue(f) }
