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

// BenchmarkPut measures puts of 256-byte values over 10,000 keys of one
// object on the leader of a three-node cluster with fsync on, from 1 to
// 256 concurrent clients, each put with a request id (as the client sends
// them). Run with
//
//	go test -run '^$' -bench Put -benchtime 10000x ./server
func BenchmarkPut(b *testing.B) {
	for _, clients := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := mustStartCluster(b, 3, clusterOptions{Durable: true})
			l := c.leader(b)
			mustPutNamespace(b, l, "bench")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			value := make([]byte, 256)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < clients; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					objects := l.objects()
					for {
						op := next.Add(1)
						if op > int64(b.N) {
							return
						}
						_, err := objects.PutKey(ctx, &cairnv1.PutKeyRequest{
							Namespace: "bench", Object: "o", Key: fmt.Sprintf("k%05d", op%10000),
							Content:   &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: value},
							RequestId: fmt.Sprintf("bench-%d-%d", i, op),
						})
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "put/s")
		})
	}
}
