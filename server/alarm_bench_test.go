package server

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
)

// BenchmarkAlarmDelivery: a three-node cluster (fsync on) holds 100,000
// pending alarms (due in an hour) and b.N alarms fall due at 1,000 per
// second, delivered to a local webhook. It reports the delivery delay
// (arrival at the webhook minus fire_at) p50 and p99, and the heap of
// the process (all three nodes and the test's webhook, which keeps every
// delivery it gets: live after a GC with the alarms set and before any is
// due, the peak in use while delivering, and live after a GC at the end).
// Run it as
//
//	go test -run '^$' -bench BenchmarkAlarmDelivery -benchtime 10000x ./server
func BenchmarkAlarmDelivery(b *testing.B) {
	c := mustStartCluster(b, 3, clusterOptions{Durable: true})
	h := newHookServer(b, nil)
	leader := c.leader(b)
	mustAlarmNamespace(b, leader, "bench", webhookSettings(h, "s", 2*time.Second, 6))

	// 100,000 pending alarms, in transactions of 100 set_alarm ops, 8 at a time.
	const pending = 100_000
	later := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	var next atomic.Int64
	setup := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(100)) - 100
				if i >= pending {
					return
				}
				mustSetAlarms(b, leader, "bench", spreadAlarms(fmt.Sprintf("pending-%06d", i), 100, later, time.Minute))
			}
		}()
	}
	wg.Wait()
	b.Logf("%d pending alarms set in %s", pending, time.Since(setup))

	// b.N alarms due at 1,000 per second, starting once they are all set
	// (the setup above sets about 10,000 a second).
	start := time.Now().Add(2*time.Second + time.Duration(b.N)*200*time.Microsecond)
	planned := spreadAlarms("due", b.N, start, time.Duration(b.N)*time.Millisecond)
	mustSetAlarms(b, leader, "bench", planned)
	if time.Now().After(start) {
		b.Fatalf("setting %d alarms took until %s after the first was due", b.N, time.Since(start))
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	pendingHeap := ms.HeapAlloc
	b.ResetTimer()
	var peak uint64
	deadline := planned[len(planned)-1].fireAt.Add(time.Minute)
	for len(h.firstOK()) < len(planned) {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d alarms delivered a minute after the last was due", len(h.firstOK()), len(planned))
		}
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		<-time.After(100 * time.Millisecond)
	}
	b.StopTimer()
	delays := checkDeliveries(b, h, planned)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	ns, err := leader.namespaces().GetNamespace(testCtx(b), &cairnv1.GetNamespaceRequest{Namespace: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(percentile(delays, 0.5).Microseconds())/1000, "p50-delay-ms")
	b.ReportMetric(float64(percentile(delays, 0.99).Microseconds())/1000, "p99-delay-ms")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-inuse-MB")
	b.ReportMetric(float64(pendingHeap)/(1<<20), "pending-live-heap-MB")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-heap-MB")
	b.Logf("delivered %d alarms (%d deliveries) with %d still pending; delay p50 %s p99 %s max %s",
		len(planned), len(h.deliveries()), ns.Namespace.Alarms.Pending, percentile(delays, 0.5), percentile(delays, 0.99), delays[len(delays)-1])
}
