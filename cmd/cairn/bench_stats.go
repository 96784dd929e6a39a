package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram counts durations (nanoseconds) in log-linear buckets, the
// layout of HdrHistogram: values below 2^histSubBits are counted exactly;
// above, every power of two is split into 2^histSubBits equal buckets, so a
// bucket is at most 1/128 of the values it holds wide and a quantile read
// at its midpoint is within 0.4 % of the exact sample. Recording is an
// index computation and an increment: no allocation after a bucket row is
// first touched, and no lock, since each worker owns its histograms and
// they are merged when the run ends.
type histogram struct {
	// rows[r] holds the counts of bucket indexes r*histSub ... r*histSub+histSub-1,
	// allocated on first use (a run touches a handful of rows).
	rows     [histRows]*[histSub]uint32
	count    uint64
	sum      float64
	min, max int64
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	// histMaxBits bounds what is bucketed: larger values (over 18 minutes)
	// land in the last bucket; max stays exact.
	histMaxBits = 40
	histRows    = histMaxBits - histSubBits + 1
)

// histIndex is the bucket of v: shift*histSub + (v >> shift), where shift
// keeps v >> shift below 2*histSub.
func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	shift := max(bits.Len64(uint64(v))-histSubBits-1, 0)
	return shift*histSub + int(v>>shift)
}

// histMid is the midpoint of bucket i, the value a quantile reports.
func histMid(i int) int64 {
	row, off := i>>histSubBits, int64(i&(histSub-1))
	if row == 0 {
		return off
	}
	shift := row - 1
	low := (histSub + off) << shift
	return low + (int64(1)<<shift-1)/2
}

// record counts one duration.
func (h *histogram) record(d time.Duration) {
	v := int64(d)
	i := histIndex(v)
	r := h.rows[i>>histSubBits]
	if r == nil {
		r = new([histSub]uint32)
		h.rows[i>>histSubBits] = r
	}
	r[i&(histSub-1)]++
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.count++
	h.sum += float64(v)
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	if o.count == 0 {
		return
	}
	for ri, r := range o.rows {
		if r == nil {
			continue
		}
		if h.rows[ri] == nil {
			h.rows[ri] = new([histSub]uint32)
		}
		for j, n := range r {
			h.rows[ri][j] += n
		}
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.count += o.count
	h.sum += o.sum
}

// quantile returns the nearest-rank q-quantile (0 < q <= 1): the value
// of the sample at rank ceil(q*count), to within its bucket's precision.
func (h *histogram) quantile(q float64) int64 {
	if h.count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	rank = min(max(rank, 1), h.count)
	if rank == h.count {
		return h.max
	}
	var seen uint64
	for ri, r := range h.rows {
		if r == nil {
			continue
		}
		for j, n := range r {
			if seen += uint64(n); seen >= rank {
				return min(max(histMid(ri<<histSubBits|j), h.min), h.max)
			}
		}
	}
	return h.max
}

// latencySummary is a histogram in milliseconds, as printed and in the
// JSON line (field names as the shared load generator's).
type latencySummary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func (h *histogram) summary() latencySummary {
	if h.count == 0 {
		return latencySummary{}
	}
	ms := func(ns int64) float64 { return round3(float64(ns) / 1e6) }
	return latencySummary{
		Count: h.count,
		P50:   ms(h.quantile(0.50)), P90: ms(h.quantile(0.90)), P99: ms(h.quantile(0.99)), P999: ms(h.quantile(0.999)),
		Max: ms(h.max), Mean: round3(h.sum / float64(h.count) / 1e6),
	}
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
