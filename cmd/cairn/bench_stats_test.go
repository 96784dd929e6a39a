package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistogramQuantiles checks the histogram's quantiles against the
// nearest-rank quantiles of the sorted samples: within half a bucket
// (1/256 of the value), exact below 256 ns, max and mean exact, and the
// same whether the samples were recorded in one histogram or merged from
// several.
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var samples []int64
	// Log-normal around 2 ms, spanning microseconds to seconds, plus the
	// exact range and the edges.
	for range 200000 {
		samples = append(samples, int64(math.Exp(rng.NormFloat64()*1.5+math.Log(2e6))))
	}
	for v := range int64(300) {
		samples = append(samples, v)
	}
	samples = append(samples, 1<<histMaxBits+12345) // beyond the bucketed range: max stays exact

	var one histogram
	parts := make([]histogram, 7)
	var sum float64
	for i, v := range samples {
		one.record(time.Duration(v))
		parts[i%len(parts)].record(time.Duration(v))
		sum += float64(v)
	}
	var merged histogram
	for i := range parts {
		merged.merge(&parts[i])
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	for _, h := range []*histogram{&one, &merged} {
		if h.count != uint64(len(samples)) || h.max != sorted[len(sorted)-1] || h.min != 0 {
			t.Fatalf("count %d max %d min %d; want %d, %d, 0", h.count, h.max, h.min, len(samples), sorted[len(sorted)-1])
		}
		if math.Abs(h.sum-sum) > 1e-9*sum {
			t.Errorf("sum %g, want %g", h.sum, sum)
		}
		for _, q := range []float64{0.0001, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1} {
			rank := int(math.Ceil(q * float64(len(sorted))))
			want := sorted[rank-1]
			got := h.quantile(q)
			if tol := float64(want)/(2*histSub) + 1; math.Abs(float64(got-want)) > tol {
				t.Errorf("quantile(%g) = %d, want %d within %.0f", q, got, want, tol)
			}
		}
	}
	if one.summary() != merged.summary() {
		t.Errorf("merged summary %+v differs from one histogram's %+v", merged.summary(), one.summary())
	}

	// Below 2^histSubBits+1 every value has its own bucket.
	var small histogram
	for v := range int64(256) {
		small.record(time.Duration(v))
	}
	for v := int64(1); v <= 256; v++ {
		if got := small.quantile(float64(v) / 256); got != v-1 {
			t.Fatalf("small quantile(%d/256) = %d, want %d", v, got, v-1)
		}
	}
	var empty histogram
	if empty.quantile(0.5) != 0 || empty.summary() != (latencySummary{}) {
		t.Errorf("empty histogram: %d %+v", empty.quantile(0.5), empty.summary())
	}
}

// BenchmarkHistogramRecord is the per-operation cost of the bench's own
// bookkeeping (it must stay far below a request's).
func BenchmarkHistogramRecord(b *testing.B) {
	var h histogram
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]time.Duration, 1024)
	for i := range vals {
		vals[i] = time.Duration(rng.Int64N(int64(100 * time.Millisecond)))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.record(vals[i&1023])
	}
}
