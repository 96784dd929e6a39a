package server

import (
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestReadStaleness: a node cut off from its leader still answers
// serializable reads, saying how long since it heard from the leader,
// but refuses one whose max_staleness_ms it cannot meet.
func TestReadStaleness(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{})
	f := c.followers(t)[0]
	mustPutNamespace(t, f, "st")
	put := mustPutKey(t, f, "st", "o", "k", "v")
	waitFor(t, waitLong, "the follower to apply the write", func() bool { return f.FSM.AppliedIndex() >= put.Revision })
	read := func(maxStaleness uint64) (*cairnv1.GetKeyResponse, error) {
		return f.objects().GetKey(testCtx(t), &cairnv1.GetKeyRequest{Namespace: "st", Object: "o", Key: "k", Consistency: Serializable, MaxStalenessMs: maxStaleness})
	}
	if _, err := read(5000); err != nil {
		t.Fatalf("bounded serializable read on a healthy follower: %v", err)
	}
	for _, n := range c.running() {
		if n != f {
			n.stop()
		}
	}
	var last error
	waitFor(t, waitLong, "a bounded read to be refused", func() bool {
		_, last = read(300)
		return status.Code(last) == codes.Unavailable
	})
	wantCode(t, last, codes.Unavailable, "max_staleness_ms", "300")
	resp, err := read(0)
	if err != nil || resp.GetValue().GetStringValue() != "v" {
		t.Fatalf("unbounded serializable read on a cut-off node: %v %v", resp, err)
	}
	if resp.Header.Consistency != Serializable || resp.Header.Revision < put.Revision {
		t.Fatalf("header %+v", resp.Header)
	}
}
