package server

import (
	"fmt"
	"sort"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
)

// TestAlarmFiring: 1000 alarms spread over 5 s on a three-node cluster
// all fire, none before its time; the delivery delay is logged.
func TestAlarmFiring(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	h := newHookServer(t, nil)
	f := c.followers(t)[0]
	mustAlarmNamespace(t, f, "fire", webhookSettings(h, "s", 200*time.Millisecond, 6))
	planned := spreadAlarms("a", 1000, time.Now().Add(time.Second), 5*time.Second)
	mustSetAlarms(t, f, "fire", planned)
	waitFor(t, waitLong, "1000 alarms delivered", func() bool { return len(h.firstOK()) == len(planned) })
	delays := checkDeliveries(t, h, planned)
	t.Logf("1000 alarms over 5 s: delay p50 %s, p99 %s, max %s; %d deliveries in all",
		percentile(delays, 0.5), percentile(delays, 0.99), delays[len(delays)-1], len(h.deliveries()))
	waitFor(t, waitLong, "every alarm acked", func() bool {
		ns, err := f.namespaces().GetNamespace(testCtx(t), &cairnv1.GetNamespaceRequest{Namespace: "fire"})
		return err == nil && ns.Namespace.Alarms.Pending+ns.Namespace.Alarms.Delivering+ns.Namespace.Alarms.Dead == 0
	})
}

// TestAlarmFailover: the leader is killed while alarms are being
// delivered; every alarm is still delivered (at least once), none before
// its time, and the ones due by the new leader's election fire within 2
// s of it.
func TestAlarmFailover(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	h := newHookServer(t, nil)
	h.latency = 20 * time.Millisecond // deliveries are in flight when the leader dies
	f := c.followers(t)[0]
	mustAlarmNamespace(t, f, "fo", webhookSettings(h, "s", 200*time.Millisecond, 6))
	planned := spreadAlarms("a", 400, time.Now().Add(time.Second), 4*time.Second)
	mustSetAlarms(t, f, "fo", planned)

	waitFor(t, waitLong, "100 deliveries", func() bool { return len(h.deliveries()) >= 100 })
	old := c.leader(t)
	killed := time.Now()
	old.stop()
	var elected time.Time
	waitFor(t, waitLong, "a new leader", func() bool {
		for _, n := range c.running() {
			if n.Node.IsLeader() {
				elected = time.Now()
				return true
			}
		}
		return false
	})
	t.Logf("leader %s killed after %d deliveries; new leader after %s", old.id, len(h.deliveries()), elected.Sub(killed))
	waitFor(t, waitLong, "every alarm delivered", func() bool { return len(h.firstOK()) == len(planned) })
	checkDeliveries(t, h, planned)

	first := h.firstOK()
	var late []string
	var worst time.Duration // of alarms first delivered after the election: delivery minus max(due, election)
	for _, p := range planned {
		d := first[p.object+"/"+p.name]
		deadline := p.fireAt
		if deadline.Before(elected) {
			deadline = elected
		}
		if d.at.After(elected) {
			worst = max(worst, d.at.Sub(deadline))
		}
		if d.at.After(deadline.Add(2 * time.Second)) {
			late = append(late, fmt.Sprintf("%s (due %s, delivered %s after the election)", p.object, p.fireAt.Format(time.StampMilli), d.at.Sub(elected)))
		}
	}
	if len(late) > 0 {
		t.Errorf("%d alarms were delivered more than 2 s after the later of their time and the election: %v", len(late), late[:min(len(late), 5)])
	}
	t.Logf("after the election, alarms were delivered at most %s after the later of their time and the election", worst)
	dups := len(h.deliveries()) - len(first)
	t.Logf("%d deliveries for %d alarms (%d repeated, at least once)", len(h.deliveries()), len(first), dups)
	// And every delivery was acked: no alarm is left behind.
	waitFor(t, waitLong, "every alarm completed", func() bool {
		ns, err := c.running()[0].namespaces().GetNamespace(testCtx(t), &cairnv1.GetNamespaceRequest{Namespace: "fo"})
		return err == nil && ns.Namespace.Alarms.Pending+ns.Namespace.Alarms.Delivering+ns.Namespace.Alarms.Dead == 0
	})
}

// TestAlarmFullRestart: all three nodes stop with 1000 alarms pending, a
// quarter of which fall due while the cluster is down; restarted, they
// deliver every one, none early.
func TestAlarmFullRestart(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	h := newHookServer(t, nil)
	leader := c.leader(t)
	mustAlarmNamespace(t, leader, "rs", webhookSettings(h, "s", 200*time.Millisecond, 6))
	planned := spreadAlarms("a", 1000, time.Now().Add(2500*time.Millisecond), 2*time.Second)
	mustSetAlarms(t, leader, "rs", planned)
	c.waitConverged(t)
	if len(h.deliveries()) != 0 {
		t.Fatalf("%d deliveries before the restart; the alarms fire too soon for this test", len(h.deliveries()))
	}

	type addrs struct{ raft, grpc, http string }
	nodes := c.running()
	saved := map[*testNode]addrs{}
	for _, n := range nodes {
		saved[n] = addrs{n.Node.RaftAddr(), n.Server.GRPCAddr(), n.Server.HTTPAddr()}
	}
	c.stopAll()
	stopped := time.Now()
	// A quarter of them fall due while every node is down.
	waitFor(t, waitLong, "a quarter of the alarms to fall due", func() bool { return time.Now().After(planned[len(planned)/4].fireAt) })
	for _, n := range nodes {
		a := saved[n]
		c.mustRestart(t, n, a.raft, a.grpc, a.http)
	}
	c.leader(t)
	t.Logf("cluster down and up again in %s", time.Since(stopped))
	waitFor(t, waitLong, "1000 alarms delivered after the restart", func() bool { return len(h.firstOK()) == len(planned) })
	delays := checkDeliveries(t, h, planned)
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	t.Logf("delay p50 %s, p99 %s", percentile(delays, 0.5), percentile(delays, 0.99))
}
