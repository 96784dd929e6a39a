package client_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cairndb/cairn/raftnode"
	"github.com/cairndb/cairn/server"
)

// testCluster is three real nodes in this process, on loopback.
type testCluster struct {
	nodes []*server.RunningNode
	dir   string
}

// startCluster starts three nodes (the first bootstraps, the others join)
// and waits until every node is ready.
func startCluster() (*testCluster, error) {
	dir, err := os.MkdirTemp("", "cairn-client-")
	if err != nil {
		return nil, err
	}
	c := &testCluster{dir: dir}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("n%d", i)
		cfg := server.NodeConfig{
			Dir: filepath.Join(dir, id),
			Raft: raftnode.Config{ID: id, BindAddr: "127.0.0.1:0", HeartbeatTimeout: 500 * time.Millisecond,
				ElectionTimeout: 500 * time.Millisecond, LeaderLeaseTimeout: 250 * time.Millisecond,
				NoSync: true, LogOutput: io.Discard, LogLevel: "error"},
			Server:    server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			FSMNoSync: true,
		}
		if i == 1 {
			cfg.Bootstrap = true
		} else {
			cfg.Join = []string{c.nodes[0].Server.GRPCAddr()}
		}
		rn, err := server.StartNode(cfg)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, rn)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ready := true
		for _, n := range c.nodes {
			members, err := n.FSM.Members()
			ready = ready && err == nil && len(members) == 3 && n.Node.CaughtUp()
		}
		if ready {
			return c, nil
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("cluster not ready in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *testCluster) endpoints() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.Server.GRPCAddr())
	}
	return out
}

func (c *testCluster) stop() {
	for _, n := range c.nodes {
		n.Stop()
	}
	_ = os.RemoveAll(c.dir)
}
