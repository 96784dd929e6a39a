package server

import (
	"net/http"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
)

func TestSnapshotBarrierServer(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{TrailingLogs: 2})
	l := c.leader(t)
	mustPutNamespace(t, l, "ns")
	c.waitConverged(t)
	f := c.followers(t)[0]
	raftAddr, g, h := f.Node.RaftAddr(), f.Server.GRPCAddr(), f.Server.HTTPAddr()
	f.stop()
	for i := range 10 {
		mustPutKey(t, l, "ns", "o", string(rune('a'+i)), 1.0)
	}
	// A linearizable read: the leader's first read index in its term appends a barrier.
	mustGetKey(t, l, "ns", "o", "a", Linearizable)
	if err := l.Node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	f = c.mustRestart(t, f, raftAddr, g, h)
	waitFor(t, waitLong, "restore", func() bool { return f.FSM.AppliedIndex() >= l.FSM.AppliedIndex() })
	_, err := f.objects().GetKey(testCtx(t), &cairnv1.GetKeyRequest{Namespace: "ns", Object: "o", Key: "a"})
	t.Logf("linearizable GetKey on the restarted follower: %v", err)
	code, body := restCall(t, f, http.MethodGet, "/readyz", "")
	t.Logf("/readyz: %d %s", code, body)
	if err != nil || code != 200 {
		t.Fail()
	}
}
