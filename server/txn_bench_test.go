package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
)

// BenchmarkTxn measures compare-and-set transactions (compare a key's
// mod_revision, put it, return it on failure) on a three-node cluster with
// fsync on, from 1 and from 64 concurrent clients spread over the nodes,
// each client on its own key. Run with
//
//	go test -run XXX -bench Txn -benchtime 3000x ./server
func BenchmarkTxn(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := mustStartCluster(b, 3, clusterOptions{Durable: true})
			nodes := c.running()
			mustPutNamespace(b, nodes[0], "bench")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < clients; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n := nodes[i%len(nodes)]
					key := fmt.Sprintf("k%d", i)
					rev := uint64(0)
					for next.Add(1) <= int64(b.N) {
						resp, err := n.objects().Txn(ctx, &cairnv1.TxnRequest{
							Namespace: "bench",
							Compares:  []*cairnv1.Compare{{Object: "o", Key: key, Target: &cairnv1.Compare_ModRevision{ModRevision: rev}}},
							Success:   []*cairnv1.TxnOp{{Op: &cairnv1.TxnOp_Put{Put: &cairnv1.PutOp{Object: "o", Key: key, Content: &cairnv1.PutOp_BinaryValue{BinaryValue: make([]byte, 256)}}}}},
							Failure:   []*cairnv1.TxnOp{{Op: &cairnv1.TxnOp_Get{Get: &cairnv1.GetOp{Object: "o", Key: key}}}},
						})
						if err != nil {
							b.Error(err)
							return
						}
						if !resp.Succeeded {
							b.Errorf("client %d: compare failed on its own key", i)
							return
						}
						rev = resp.Revision
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "txn/s")
		})
	}
}
