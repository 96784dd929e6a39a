package server

import (
	"net/http"
	"regexp"
	"strconv"
	"testing"
)

// TestMappedMemoryBound: a node whose file-backed resident memory passes
// MaxMappedMemoryBytes hands its state map's pages back, and counts it;
// with the bound off (negative) it never does. fsm's
// TestReleaseMappingWhileOpen shows what a release does to RSS.
func TestMappedMemoryBound(t *testing.T) {
	c := mustStartCluster(t, 2, clusterOptions{Configure: func(id string, cfg *NodeConfig) {
		cfg.Server.MaxMappedMemoryBytes = 1 // any resident file page passes it
		if id == "node2" {
			cfg.Server.MaxMappedMemoryBytes = -1
		}
	}})
	byID := map[string]*testNode{}
	for _, n := range c.running() {
		byID[n.id] = n
	}
	releases := func(n *testNode) int {
		_, body := restCall(t, n, http.MethodGet, "/metrics", "")
		m := regexp.MustCompile(`(?m)^cairn_state_map_releases_total (\d+)$`).FindStringSubmatch(string(body))
		if m == nil {
			t.Fatalf("%s /metrics lack cairn_state_map_releases_total", n.id)
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	waitFor(t, waitLong, "node1 to release its state map twice", func() bool { return releases(byID["node1"]) >= 2 })
	if got := releases(byID["node2"]); got != 0 {
		t.Fatalf("node2, with the bound off, released its map %d times", got)
	}
}
