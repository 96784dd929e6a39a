package server

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Multi-node tests: real nodes in one process, real Raft over TCP on
// loopback, real disks.

// TestClusterWriteToFollowerIsForwarded: a write sent to a follower is
// forwarded to the leader, applied at the revision the follower reports,
// readable linearizably on every node as soon as the write returns, and
// eventually readable serializably on every node.
func TestClusterWriteToFollowerIsForwarded(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	leader := c.leader(t)
	f := c.followers(t)[0]

	mustPutNamespace(t, f, "fwd")
	doc := map[string]any{"text": "hello", "n": 1.0}
	put := mustPutKey(t, f, "fwd", "room", "greeting", doc)
	if put.Header.GetNodeId() != f.id {
		t.Errorf("write answered by %q, want the follower %q", put.Header.GetNodeId(), f.id)
	}
	if !put.Created || put.Revision == 0 || put.Header.GetRevision() != put.Revision {
		t.Fatalf("PutKey = %v, want created at a non-zero revision equal to the header's", put)
	}
	// The leader applied it at that revision: it went through the leader's
	// log, not around it.
	kv, err := leader.FSM.Get("fwd", "room", "greeting")
	if err != nil {
		t.Fatalf("leader has no greeting after the write returned: %v", err)
	}
	if kv.ModRevision != put.Revision {
		t.Fatalf("leader holds greeting at revision %d, the write returned %d", kv.ModRevision, put.Revision)
	}

	want := jsonValue(t, doc)
	for _, n := range c.running() {
		got := mustGetKey(t, n, "fwd", "room", "greeting", Linearizable)
		if !proto.Equal(got.GetValue(), want) || got.ModRevision != put.Revision || got.CreateRevision != put.Revision {
			t.Errorf("%s: linearizable read = %v, want %v at revision %d", n.id, got, want, put.Revision)
		}
		if h := got.Header; h.GetConsistency() != Linearizable || h.GetNodeId() != n.id || h.GetRevision() < put.Revision {
			t.Errorf("%s: linearizable read header = %v, want consistency %q, node %q, revision >= %d", n.id, h, Linearizable, n.id, put.Revision)
		}
	}
	for _, n := range c.running() {
		waitFor(t, waitLong, n.id+" to serve the write serializably", func() bool {
			got, err := n.objects().GetKey(testCtx(t), &cairnv1.GetKeyRequest{Namespace: "fwd", Object: "room", Key: "greeting", Consistency: Serializable})
			return err == nil && got.ModRevision == put.Revision && proto.Equal(got.GetValue(), want) &&
				got.Header.GetConsistency() == Serializable && got.Header.GetRevision() >= put.Revision
		})
	}
}

// TestClusterLeaderLossKeepsAcknowledgedWrites: writers hammer the
// followers while the leader is killed. A new leader is elected, every
// write that was acknowledged is readable from the survivors, and writes
// keep succeeding. Fsync stays on.
func TestClusterLeaderLossKeepsAcknowledgedWrites(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{Durable: true})
	leader := c.leader(t)
	mustPutNamespace(t, leader, "dur")
	followers := c.followers(t)

	type ack struct {
		key       string
		value     string
		revision  uint64
		afterKill bool // the write began after the leader was stopped
	}
	var (
		mu       sync.Mutex
		acked    = map[string][]ack{} // object -> acknowledged writes
		failures atomic.Int64
		killed   atomic.Bool
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	count := func(afterKillOnly bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, acks := range acked {
			for _, a := range acks {
				if a.afterKill || !afterKillOnly {
					n++
				}
			}
		}
		return n
	}
	const writers = 4
	for w := range writers {
		target := followers[w%len(followers)]
		client := target.objects()
		object := fmt.Sprintf("writer-%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				key, value := fmt.Sprintf("k%05d", seq), fmt.Sprintf("%s via %s #%d", object, target.id, seq)
				afterKill := killed.Load()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := client.PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "dur", Object: object, Key: key,
					Content: &cairnv1.PutKeyRequest_Value{Value: structpb.NewStringValue(value)}})
				cancel()
				if err == nil {
					mu.Lock()
					acked[object] = append(acked[object], ack{key: key, value: value, revision: resp.Revision, afterKill: afterKill})
					mu.Unlock()
					continue
				}
				// The outcome of a failed write is unknown; it is not
				// counted. Pace the retries while the cluster elects.
				failures.Add(1)
				pause := time.NewTimer(20 * time.Millisecond)
				select {
				case <-stop:
					pause.Stop()
					return
				case <-pause.C:
				}
			}
		}()
	}
	stopWriters := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopWriters()

	waitFor(t, waitLong, "40 acknowledged writes before the leader is killed", func() bool { return count(false) >= 40 })
	killed.Store(true)
	oldLeader := leader.id
	leader.stop()
	newLeader := c.leader(t)
	if newLeader.id == oldLeader {
		t.Fatalf("leader is still %s after it was stopped", oldLeader)
	}
	waitFor(t, waitLong, "40 acknowledged writes begun after the leader was killed", func() bool { return count(true) >= 40 })
	stopWriters()
	t.Logf("acknowledged %d writes (%d after the kill), %d failed; new leader %s", count(false), count(true), failures.Load(), newLeader.id)

	// Every acknowledged write is there, on every survivor, at the
	// revision it was acknowledged with.
	revisions := map[uint64]string{}
	for _, n := range c.running() {
		for object, acks := range acked {
			got := mustListAll(t, n, "dur", object)
			for _, a := range acks {
				kv, ok := got[a.key]
				if !ok {
					t.Fatalf("%s: acknowledged write %s/%s (revision %d) is lost", n.id, object, a.key, a.revision)
				}
				if kv.GetValue().GetStringValue() != a.value || kv.ModRevision != a.revision {
					t.Fatalf("%s: %s/%s = %q at revision %d, acknowledged %q at revision %d",
						n.id, object, a.key, kv.GetValue().GetStringValue(), kv.ModRevision, a.value, a.revision)
				}
				if prev, dup := revisions[a.revision]; dup && prev != object+"/"+a.key {
					t.Fatalf("revision %d acknowledged for both %s and %s/%s", a.revision, prev, object, a.key)
				}
				revisions[a.revision] = object + "/" + a.key
			}
		}
	}
	c.mustStateHash(t)

	// Writes keep succeeding, on the new leader and through the follower.
	mustPutKey(t, newLeader, "dur", "after", "on-leader", true)
	for _, n := range c.followers(t) {
		mustPutKey(t, n, "dur", "after", "via-"+n.id, true)
	}
}

// mustListAll lists every key of an object, linearizably, through n.
func mustListAll(t testing.TB, n *testNode, ns, object string) map[string]*cairnv1.KeyValue {
	t.Helper()
	out := map[string]*cairnv1.KeyValue{}
	token := ""
	for {
		var resp *cairnv1.ListKeysResponse
		err := retryUnavailable(t, "ListKeys "+object, func() (err error) {
			resp, err = n.objects().ListKeys(testCtx(t), &cairnv1.ListKeysRequest{Namespace: ns, Object: object, Limit: 1000, PageToken: token})
			return err
		})
		if err != nil {
			t.Fatalf("ListKeys(%s/%s) via %s: %v", ns, object, n.id, err)
		}
		for _, kv := range resp.Kvs {
			out[kv.Key] = kv
		}
		if token = resp.NextPageToken; token == "" {
			return out
		}
	}
}

// TestClusterRestartedNodeCatchesUpWithoutReapplying: a follower that is
// stopped and started again on its data directory applies only the
// commands it missed, not the ones it had applied, and ends with the same
// state as the leader.
func TestClusterRestartedNodeCatchesUpWithoutReapplying(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	leader := c.leader(t)
	mustPutNamespace(t, leader, "rs")
	for i := range 20 {
		mustPutKey(t, leader, "rs", "obj", fmt.Sprintf("before-%02d", i), float64(i))
	}
	c.waitConverged(t)

	followers := c.followers(t)
	f, other := followers[0], followers[1]
	raftAddr, grpcAddr, httpAddr := f.Node.RaftAddr(), f.Server.GRPCAddr(), f.Server.HTTPAddr()
	appliedBefore := f.FSM.AppliedIndex()
	if f.FSM.Applies() == 0 {
		t.Fatalf("%s applied no commands before its restart", f.id)
	}
	// leader stays up throughout: what it applies while f is down is
	// exactly what f must apply after its restart (whoever leads by then).
	leaderApplies := leader.FSM.Applies()
	f.stop()

	const missed = 25
	attempts := 0
	for i := range missed {
		key := fmt.Sprintf("during-%02d", i)
		err := retryUnavailable(t, "PutKey "+key, func() error {
			attempts++
			_, err := other.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{Namespace: "rs", Object: "obj", Key: key, RequestId: "rs-" + key,
				Content: &cairnv1.PutKeyRequest_Value{Value: structpb.NewNumberValue(float64(i))}})
			return err
		})
		if err != nil {
			t.Fatalf("PutKey(%s) via %s: %v", key, other.id, err)
		}
	}

	f = c.mustRestart(t, f, raftAddr, grpcAddr, httpAddr)
	// It may already have caught up by now (Raft runs as soon as the node
	// starts); Applies below shows it did not start over.
	if got := f.FSM.AppliedIndex(); got < appliedBefore {
		t.Fatalf("restarted FSM is at applied index %d, it had applied %d", got, appliedBefore)
	}
	waitFor(t, waitLong, f.id+" to catch up with the leader", func() bool {
		return f.FSM.AppliedIndex() == leader.FSM.AppliedIndex()
	})
	c.waitConverged(t)

	leaderDelta := leader.FSM.Applies() - leaderApplies
	if got := f.FSM.Applies(); got != leaderDelta {
		t.Errorf("restarted node applied %d commands, the leader applied %d while it was down: it re-applied entries it had", got, leaderDelta)
	}
	// Each write is one command; a write retried after an unknown outcome
	// may have been applied twice.
	if leaderDelta < missed || leaderDelta > uint64(attempts) {
		t.Errorf("the leader applied %d commands while the follower was down, want %d to %d (the writes)", leaderDelta, missed, attempts)
	}
	hf, err := f.FSM.Hash()
	if err != nil {
		t.Fatal(err)
	}
	hl, err := leader.FSM.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hf, hl) {
		t.Fatalf("restarted node's state %x differs from the leader's %x", hf, hl)
	}
	// It serves what it missed, on its old addresses.
	got := mustGetKey(t, f, "rs", "obj", fmt.Sprintf("during-%02d", missed-1), Serializable)
	if got.GetValue().GetNumberValue() != missed-1 {
		t.Fatalf("restarted node reads %v", got.GetValue())
	}
}

// TestClusterNewNodeAfterCompactionGetsSnapshot: once the log is
// compacted, a new member cannot replay it; it must receive a snapshot,
// and then hold the same state as everyone else.
func TestClusterNewNodeAfterCompactionGetsSnapshot(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{SnapshotThreshold: 64, TrailingLogs: 16})
	leader := c.leader(t)
	mustPutNamespace(t, leader, "snap")

	const writers, perWriter = 6, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				req := &cairnv1.PutKeyRequest{
					Namespace: "snap", Object: fmt.Sprintf("obj-%d", w%3), Key: fmt.Sprintf("w%d-%03d", w, i),
					Content: &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: bytes.Repeat([]byte{byte(i)}, 100)},
				}
				var err error
				for attempt := 0; attempt < 100; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err = leader.objects().PutKey(ctx, req)
					cancel()
					if status.Code(err) != codes.Unavailable {
						break // done, or failed for good; Unavailable: an election, try again
					}
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d, write %d: %w", w, i, err)
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
	c.waitConverged(t)
	for _, n := range c.running() {
		if err := n.Node.Snapshot(); err != nil {
			t.Fatalf("%s: Snapshot: %v", n.id, err)
		}
	}

	n4 := c.mustAddNode(t, "node4")
	waitFor(t, waitLong, "node4 to apply the leader's index", func() bool {
		return n4.FSM.AppliedIndex() == leader.FSM.AppliedIndex()
	})
	hash := c.mustStateHash(t)
	t.Logf("node4 applied %d commands itself; state %x", n4.FSM.Applies(), hash[:8])
	if got := n4.FSM.Applies(); got >= writers*perWriter {
		t.Errorf("node4 applied %d commands: it replayed the log instead of installing a snapshot", got)
	}
	snaps, err := os.ReadDir(filepath.Join(n4.dir, "raft", "snapshots"))
	if err != nil || len(snaps) == 0 {
		t.Errorf("node4 holds no snapshot (%v): it cannot have been sent one", err)
	}
	for _, key := range []string{"w0-000", "w5-049"} {
		obj := "obj-0"
		if key[1] == '5' {
			obj = "obj-2"
		}
		got := mustGetKey(t, n4, "snap", obj, key, Linearizable)
		if len(got.GetBinaryValue()) != 100 {
			t.Errorf("node4 reads %s/%s = %v", obj, key, got)
		}
	}
	// And it takes part in new writes.
	put := mustPutKey(t, n4, "snap", "obj-0", "after-join", "x")
	c.waitConverged(t)
	if kv, err := n4.FSM.Get("snap", "obj-0", "after-join"); err != nil || kv.ModRevision != put.Revision {
		t.Fatalf("node4: after-join = %v, %v; want revision %d", kv, err, put.Revision)
	}
	c.mustStateHash(t)
}

// TestClusterLinearizableReadFromFollower: a linearizable read from one
// follower, right after a write through the other returned, sees it.
func TestClusterLinearizableReadFromFollower(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	followers := c.followers(t)
	a, b := followers[0], followers[1]
	mustPutNamespace(t, a, "lin")
	for i := range 50 {
		key := fmt.Sprintf("key-%02d", i)
		put := mustPutKey(t, a, "lin", "obj", key, float64(i))
		got := mustGetKey(t, b, "lin", "obj", key, Linearizable)
		if got.GetValue().GetNumberValue() != float64(i) || got.ModRevision != put.Revision {
			t.Fatalf("read %d from %s = %v at revision %d, the write through %s returned revision %d",
				i, b.id, got.GetValue(), got.ModRevision, a.id, put.Revision)
		}
	}
}

// TestClusterMembersAndLeadershipTransfer: every node reports the same
// members with their API addresses, and leadership moves on request.
func TestClusterMembersAndLeadershipTransfer(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	leader := c.leader(t)
	for _, n := range c.running() {
		resp, err := n.cluster().GetCluster(testCtx(t), &cairnv1.GetClusterRequest{})
		if err != nil {
			t.Fatalf("%s: GetCluster: %v", n.id, err)
		}
		if resp.LeaderId != leader.id || len(resp.Members) != 3 {
			t.Fatalf("%s: GetCluster = %v, want leader %s and 3 members", n.id, resp, leader.id)
		}
		for _, m := range resp.Members {
			var node *testNode
			for _, x := range c.running() {
				if x.id == m.Id {
					node = x
				}
			}
			if node == nil || m.RaftAddr != node.Node.RaftAddr() || m.GrpcAddr != node.Server.GRPCAddr() ||
				m.HttpAddr != node.Server.HTTPAddr() || !m.Voter || m.Leader != (m.Id == leader.id) {
				t.Errorf("%s: member %v does not describe a running node", n.id, m)
			}
		}
	}
	target := c.followers(t)[1]
	resp, err := c.followers(t)[0].cluster().TransferLeadership(testCtx(t), &cairnv1.TransferLeadershipRequest{Id: target.id})
	if err != nil {
		t.Fatalf("TransferLeadership to %s: %v", target.id, err)
	}
	if resp.LeaderId != target.id {
		t.Errorf("TransferLeadership reports leader %q, want %q", resp.LeaderId, target.id)
	}
	waitFor(t, waitLong, "every node to follow "+target.id, func() bool { return c.leader(t) == target })
	mustPutNamespace(t, leader, "after-transfer")

	// A node joins through a REST address, and is removed again.
	cfg := c.nodeConfig("node4", filepath.Join(t.TempDir(), "node4"))
	cfg.Join = []string{"http://" + leader.Server.HTTPAddr()}
	n4 := c.mustStart(t, "node4", cfg)
	c.waitStable(t)
	if servers, err := c.leader(t).Node.Servers(); err != nil || len(servers) != 4 {
		t.Fatalf("after the REST join the configuration is %v, %v", servers, err)
	}
	if _, err := n4.cluster().RemoveMember(testCtx(t), &cairnv1.RemoveMemberRequest{Id: "node4"}); err != nil {
		t.Fatalf("RemoveMember(node4): %v", err)
	}
	n4.stop()
	for _, n := range c.running() {
		waitFor(t, waitLong, n.id+" to forget node4", func() bool {
			servers, err := n.Node.Servers()
			members, merr := n.FSM.Members()
			return err == nil && merr == nil && len(servers) == 3 && len(members) == 3
		})
	}
	mustPutNamespace(t, c.followers(t)[0], "after-remove")
}

// TestGracefulShutdownHandsOverLeadership: a leader that shuts down
// gracefully hands leadership to another voter first, so the cluster has
// a leader again at once, without waiting out an election.
func TestGracefulShutdownHandsOverLeadership(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	mustPutNamespace(t, l, "gs")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l.stopped.Store(true)
	_ = l.conn.Close()
	l.Shutdown(ctx)
	var leader *testNode
	waitFor(t, testHeartbeat/2, "a new leader well inside one election timeout (leadership handed over)", func() bool {
		for _, n := range c.running() {
			if n.Node.IsLeader() {
				leader = n
			}
		}
		return leader != nil
	})
	mustPutKey(t, leader, "gs", "o", "k", 1)
}

// TestShutdownWithoutPeersDoesNotHang: when the whole cluster stops at
// once, the leader's hand-over may go to a peer that is itself stopping,
// and no new leader ever appears; its shutdown gives up on the hand-over
// within handOverBudget instead of spending the whole drain deadline.
func TestShutdownWithoutPeersDoesNotHang(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*handOverBudget)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range c.running() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.stopped.Store(true)
			_ = n.conn.Close()
			n.Shutdown(ctx)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("shutting the whole cluster down at once ran into the %s deadline (leader %s)", 4*handOverBudget, l.id)
	}
}

// TestRemoveLeaderHandsOverFirst: removing the leader moves leadership to
// another voter first; the remaining members keep serving writes.
func TestRemoveLeaderHandsOverFirst(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	l := c.leader(t)
	f := c.followers(t)[0]
	mustPutNamespace(t, f, "rl")
	if _, err := f.cluster().RemoveMember(testCtx(t), &cairnv1.RemoveMemberRequest{Id: l.id}); err != nil {
		t.Fatalf("RemoveMember(leader %s) via %s: %v", l.id, f.id, err)
	}
	resp, err := f.cluster().GetCluster(testCtx(t), &cairnv1.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Members) != 2 || resp.LeaderId == l.id || resp.LeaderId == "" {
		t.Fatalf("after removing the leader: leader %q, members %v", resp.LeaderId, resp.Members)
	}
	for _, m := range resp.Members {
		if m.Id == l.id {
			t.Fatalf("removed leader %s is still a member", l.id)
		}
	}
	mustPutKey(t, f, "rl", "o", "k", 1)
}
