package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// checkOverloaded fails unless err is the overload answer: RESOURCE_EXHAUSTED
// naming the setting, with a RetryInfo and the OVERLOADED reason.
func checkOverloaded(t *testing.T, err error, setting string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), setting) || !hasReason(st, ReasonOverloaded) {
		t.Errorf("want RESOURCE_EXHAUSTED naming %s with reason %s, got %v", setting, ReasonOverloaded, err)
		return
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return
		}
	}
	t.Errorf("overload answer without a retry hint: %v", st.Details())
}

// TestOverloadProposalsFailFast: past the bound on writes in flight on the
// leader, writes from its own clients and forwarded ones fail at once with
// RESOURCE_EXHAUSTED and a retry hint; a refused write changes nothing and
// every admitted one is applied.
func TestOverloadProposalsFailFast(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{Configure: func(_ string, cfg *NodeConfig) { cfg.Server.MaxInflightProposals = 2 }})
	nodes := c.running()
	mustPutNamespace(t, nodes[0], "ov")
	const writers, each = 48, 10
	var mu sync.Mutex
	admitted := map[string]bool{}
	refused := 0
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[w%len(nodes)]
			for i := range each {
				key := fmt.Sprintf("w%02d-%02d", w, i)
				_, err := n.objects().PutKey(testCtx(t), &cairnv1.PutKeyRequest{Namespace: "ov", Object: "o", Key: key,
					RequestId: "ov-" + key, Content: &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: []byte(key)}})
				mu.Lock()
				if err == nil {
					admitted[key] = true
				} else {
					refused++
					checkOverloaded(t, err, "max_inflight_proposals")
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if refused == 0 || len(admitted) == 0 {
		t.Fatalf("%d writes admitted, %d refused: want both with 48 writers and a bound of 2", len(admitted), refused)
	}
	c.waitConverged(t)
	kvs := mustListAll(t, c.leader(t), "ov", "o")
	if len(kvs) != len(admitted) {
		t.Fatalf("%d keys stored, %d writes admitted: a refused write changed the state or an admitted one was lost", len(kvs), len(admitted))
	}
	for key := range kvs {
		if !admitted[key] {
			t.Fatalf("key %s stored, but its write was refused", key)
		}
	}
	t.Logf("%d writes admitted, %d refused", len(admitted), refused)
}

// TestOverloadRequestsFailFast: past the bound on calls in flight on a
// node, calls fail at once the same way; over REST the answer is 429 with
// Retry-After. Health checks are not counted.
func TestOverloadRequestsFailFast(t *testing.T) {
	c := mustStartCluster(t, 3, clusterOptions{Configure: func(_ string, cfg *NodeConfig) { cfg.Server.MaxInflightRequests = 1 }})
	mustPutNamespace(t, c.leader(t), "ov")
	f := c.followers(t)[0]
	var wg sync.WaitGroup
	var mu sync.Mutex
	grpcRefused, restRefused := 0, 0
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if w%4 == 1 {
					// Probes are not counted: they answer whatever the load.
					if _, err := healthpb.NewHealthClient(f.conn).Check(testCtx(t), &healthpb.HealthCheckRequest{}); err != nil {
						t.Errorf("health Check on a loaded node: %v", err)
					}
				}
				if w%2 == 0 {
					// Linearizable reads on a follower wait for the leader's
					// read index: calls overlap.
					_, err := f.objects().GetKey(testCtx(t), &cairnv1.GetKeyRequest{Namespace: "ov", Object: "o", Key: "k"})
					if status.Code(err) == codes.ResourceExhausted {
						checkOverloaded(t, err, "max_inflight_requests")
						mu.Lock()
						grpcRefused++
						mu.Unlock()
					} else if status.Code(err) != codes.NotFound {
						t.Errorf("GetKey: %v, want NotFound or RESOURCE_EXHAUSTED", err)
					}
					continue
				}
				resp, err := http.Get("http://" + f.Server.HTTPAddr() + "/v1/namespaces/ov/objects/o/keys/k")
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusNotFound:
				case http.StatusTooManyRequests:
					if resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), "max_inflight_requests") {
						t.Errorf("429 with Retry-After %q and body %s", resp.Header.Get("Retry-After"), body)
					}
					mu.Lock()
					restRefused++
					mu.Unlock()
				default:
					t.Errorf("REST GET: HTTP %d %s", resp.StatusCode, body)
				}
			}
		}()
	}
	wg.Wait()
	if grpcRefused == 0 || restRefused == 0 {
		t.Fatalf("refused %d gRPC and %d REST calls of 160 each with a bound of 1: want some of both", grpcRefused, restRefused)
	}
}
