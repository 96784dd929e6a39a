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

// BenchmarkReads measures GetKey throughput from 64 concurrent clients on
// a three-node cluster: linearizable reads all sent to the leader,
// linearizable reads spread over all three nodes (followers get a read
// index from the leader and serve from their own state), and serializable
// reads spread over all nodes. Run with
//
//	go test -run XXX -bench Reads -benchtime 20000x ./server
func BenchmarkReads(b *testing.B) {
	c := mustStartCluster(b, 3, clusterOptions{})
	nodes := c.running()
	leader := c.leader(b)
	mustPutNamespace(b, leader, "reads")
	const keys = 1000
	for i := 0; i < keys; i += 100 {
		var puts []*cairnv1.KeyPut
		for j := i; j < i+100; j++ {
			puts = append(puts, &cairnv1.KeyPut{Key: fmt.Sprintf("k%04d", j), Content: &cairnv1.KeyPut_BinaryValue{BinaryValue: make([]byte, 256)}})
		}
		if _, err := leader.objects().BatchWrite(testCtx(b), &cairnv1.BatchWriteRequest{Namespace: "reads", Object: "o", Puts: puts}); err != nil {
			b.Fatal(err)
		}
	}
	c.waitConverged(b)
	for _, tc := range []struct {
		name        string
		targets     []*testNode
		consistency string
	}{
		{"linearizable-leader", []*testNode{leader}, Linearizable},
		{"linearizable-all", nodes, Linearizable},
		{"serializable-all", nodes, Serializable},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const clients = 64
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
					n := tc.targets[i%len(tc.targets)]
					for {
						op := next.Add(1)
						if op > int64(b.N) {
							return
						}
						_, err := n.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "reads", Object: "o", Key: fmt.Sprintf("k%04d", op%keys), Consistency: tc.consistency})
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
		})
	}
}
