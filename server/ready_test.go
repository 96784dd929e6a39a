package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
)

// TestReadyOnlyOnceCaughtUp: /readyz answers 200 on a new member only once
// it has applied everything the leader had committed when it joined. Such
// a node knows the leader as soon as the snapshot starts to arrive, and
// knows of no commit yet: "applied what is committed" alone would call it
// ready while it still holds nothing.
func TestReadyOnlyOnceCaughtUp(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{SnapshotThreshold: 64, TrailingLogs: 16})
	leader := c.leader(t)
	mustPutNamespace(t, leader, "ready")
	value := bytes.Repeat([]byte("x"), 16<<10)
	for i := range 200 {
		err := retryUnavailable(t, "PutKey", func() error {
			_, err := leader.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{Namespace: "ready", Object: fmt.Sprintf("o%d", i%10),
				Key: fmt.Sprintf("k%03d", i), RequestId: fmt.Sprintf("ready-%d", i), Content: &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: value}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	c.waitConverged(t)
	for _, n := range c.running() {
		if err := n.Node.Snapshot(); err != nil {
			t.Fatalf("%s: Snapshot: %v", n.id, err)
		}
	}
	target := leader.FSM.AppliedIndex()

	n4 := c.mustAddNode(t, "node4")
	notReady := 0
	waitFor(t, waitLong, "node4 to report ready", func() bool {
		resp, err := http.Get("http://" + n4.Server.HTTPAddr() + "/readyz")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			if !strings.HasPrefix(string(body), "not ready: ") {
				t.Fatalf("readyz: HTTP %d %q", resp.StatusCode, body)
			}
			notReady++
			return false
		}
		if applied := n4.FSM.AppliedIndex(); applied < target {
			t.Fatalf("node4 reported ready at applied index %d; the leader had committed %d when it joined", applied, target)
		}
		return true
	})
	t.Logf("node4 answered not ready %d times before it was", notReady)
}
