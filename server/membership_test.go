package server

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestMembershipChangesUnderLoad: while a client writes (with request
// ids, retrying what fails), a fourth node joins as a non-voter, is
// promoted, receives leadership, and an old node is removed; no
// acknowledged write is lost and every write applies once.
func TestMembershipChangesUnderLoad(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{Durable: true})
	first := c.running()[0]
	mustPutNamespace(t, first, "mem")

	var acked sync.Map // key -> revision
	var writes atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			key := fmt.Sprintf("k%05d", i)
			for {
				nodes := c.running()
				n := nodes[i%len(nodes)]
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := n.objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "mem", Object: "o", Key: key, RequestId: key,
					Content: &cairnv1.PutKeyRequest_Value{Value: numberValue(float64(i))}})
				cancel()
				if err == nil {
					acked.Store(key, resp.Revision)
					writes.Add(1)
					break
				}
				if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded && code != codes.Canceled {
					done <- fmt.Errorf("write %s: %w", key, err)
					return
				}
			}
		}
	}()
	progress := func(what string) {
		t.Helper()
		at := writes.Load()
		waitFor(t, waitLong, "writes to continue "+what, func() bool { return writes.Load() >= at+20 })
	}
	progress("before the changes")

	// A fourth node joins as a non-voter.
	cfg := c.nodeConfig("node4", filepath.Join(t.TempDir(), "node4"))
	cfg.Join = []string{c.leader(t).Server.GRPCAddr()}
	cfg.JoinAsNonvoter = true
	n4 := c.mustStart(t, "node4", cfg)
	voter := func(id string) (bool, bool) {
		servers, err := c.leader(t).Node.Servers()
		if err != nil {
			return false, false
		}
		for _, s := range servers {
			if s.ID == id {
				return true, s.Voter
			}
		}
		return false, false
	}
	if found, isVoter := voter("node4"); !found || isVoter {
		t.Fatalf("node4 joined as member %v voter %v, want a non-voter", found, isVoter)
	}
	progress("after the non-voter joined")

	// Promote it, hand it leadership, remove an old node.
	if _, err := first.cluster().AddMember(testCtx(t), &cairnv1.AddMemberRequest{Id: "node4", RaftAddr: n4.Node.RaftAddr(),
		GrpcAddr: n4.Server.GRPCAddr(), HttpAddr: n4.Server.HTTPAddr()}); err != nil {
		t.Fatalf("promote node4: %v", err)
	}
	if found, isVoter := voter("node4"); !found || !isVoter {
		t.Fatalf("node4 after promotion: member %v voter %v", found, isVoter)
	}
	progress("after the promotion")
	waitFor(t, waitLong, "node4 to catch up", func() bool { return n4.Node.CaughtUp() })
	if _, err := first.cluster().TransferLeadership(testCtx(t), &cairnv1.TransferLeadershipRequest{Id: "node4"}); err != nil {
		t.Fatalf("transfer leadership to node4: %v", err)
	}
	waitFor(t, waitLong, "node4 to lead", func() bool { return n4.Node.IsLeader() })
	progress("after the leadership transfer")
	var old *testNode
	for _, n := range c.running() {
		if n != n4 && n != first {
			old = n
		}
	}
	if _, err := n4.cluster().RemoveMember(testCtx(t), &cairnv1.RemoveMemberRequest{Id: old.id}); err != nil {
		t.Fatalf("remove %s: %v", old.id, err)
	}
	old.stop()
	progress("after removing an old node")
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Every acknowledged write is there, once, on every remaining node.
	c.waitConverged(t)
	for _, n := range c.running() {
		var missing []string
		acked.Range(func(k, v any) bool {
			kv, err := n.objects().GetKey(testCtx(t), &cairnv1.GetKeyRequest{Namespace: "mem", Object: "o", Key: k.(string), Consistency: Serializable})
			if err != nil || kv.ModRevision != v.(uint64) || kv.CreateRevision != kv.ModRevision {
				missing = append(missing, fmt.Sprintf("%s (%v)", k, err))
			}
			return len(missing) < 5
		})
		if len(missing) > 0 {
			t.Fatalf("%s: acknowledged writes missing or applied twice: %v", n.id, missing)
		}
	}
	t.Logf("%d writes acknowledged during the membership changes", writes.Load())
}

// TestRemovedNodeRestartDoesNotDisrupt: a node removed while it was down
// comes back still believing it is a member; it must not depose the
// leader nor drive the term up (pre-vote keeps its elections from
// counting), and the cluster keeps serving writes.
func TestRemovedNodeRestartDoesNotDisrupt(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	victim := c.followers(t)[0]
	raftAddr, grpcAddr, httpAddr := victim.Node.RaftAddr(), victim.Server.GRPCAddr(), victim.Server.HTTPAddr()
	victim.stop()
	if _, err := l.cluster().RemoveMember(testCtx(t), &cairnv1.RemoveMemberRequest{Id: victim.id}); err != nil {
		t.Fatalf("remove %s: %v", victim.id, err)
	}
	mustPutNamespace(t, l, "rm")
	term := l.Node.Status().Term
	c.mustRestart(t, victim, raftAddr, grpcAddr, httpAddr)
	// Write for several election timeouts while the removed node campaigns.
	end := time.Now().Add(4 * testElection)
	for i := 0; time.Now().Before(end); i++ {
		mustPutKey(t, l, "rm", "o", fmt.Sprint(i), i)
		if !l.Node.IsLeader() || l.Node.Status().Term != term {
			t.Fatalf("after write %d the removed node disturbed the cluster: leader %v, term %d (was %d)", i, l.Node.IsLeader(), l.Node.Status().Term, term)
		}
	}
}
