package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	shardObjectsDesc = prometheus.NewDesc("cairn_shard_objects", "Objects in each virtual shard.", []string{"shard"}, nil)
	shardBytesDesc   = prometheus.NewDesc("cairn_shard_bytes", "Key and value bytes in each virtual shard.", []string{"shard"}, nil)
	shardKeysDesc    = prometheus.NewDesc("cairn_shard_keys", "Keys in each virtual shard.", []string{"shard"}, nil)
)

// shardCollector reports the FSM's per-shard object counts and bytes,
// read at scrape time.
type shardCollector struct {
	state State
}

func (c shardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- shardObjectsDesc
	ch <- shardBytesDesc
	ch <- shardKeysDesc
}

func (c shardCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.state.ShardStats()
	if err != nil {
		return
	}
	for _, s := range stats {
		shard := strconv.Itoa(int(s.Shard))
		ch <- prometheus.MustNewConstMetric(shardObjectsDesc, prometheus.GaugeValue, float64(s.Objects), shard)
		ch <- prometheus.MustNewConstMetric(shardBytesDesc, prometheus.GaugeValue, float64(s.Bytes), shard)
		ch <- prometheus.MustNewConstMetric(shardKeysDesc, prometheus.GaugeValue, float64(s.Keys), shard)
	}
}
