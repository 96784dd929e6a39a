// Package testcluster starts a real three-node cairn cluster inside the
// calling process, on loopback, for the tests of the examples.
package testcluster

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

// Cluster is three nodes without authentication, on random ports.
type Cluster struct {
	Nodes []*server.RunningNode
	dir   string
}

// Start starts the nodes (the first bootstraps, the others join) and
// waits until every node is ready.
func Start() (*Cluster, error) {
	dir, err := os.MkdirTemp("", "cairn-example-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	for i := 1; i <= 3; i++ {
		if _, err := c.AddNode(nil); err != nil {
			c.Stop()
			return nil, err
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ready := true
		for _, n := range c.Nodes {
			members, err := n.FSM.Members()
			ready = ready && err == nil && len(members) == 3 && n.Node.CaughtUp()
		}
		if ready {
			return c, nil
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("testcluster: not ready in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AddNode starts the next node: the first bootstraps the cluster, the
// others join it. modify, when not nil, changes the node's configuration
// first (a test's own history bounds, say).
func (c *Cluster) AddNode(modify func(*server.NodeConfig)) (*server.RunningNode, error) {
	id := fmt.Sprintf("n%d", len(c.Nodes)+1)
	cfg := server.NodeConfig{
		Dir: filepath.Join(c.dir, id),
		Raft: raftnode.Config{ID: id, BindAddr: "127.0.0.1:0", HeartbeatTimeout: 500 * time.Millisecond,
			ElectionTimeout: 500 * time.Millisecond, LeaderLeaseTimeout: 250 * time.Millisecond,
			NoSync: true, LogOutput: io.Discard, LogLevel: "error"},
		Server:    server.Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		FSMNoSync: true,
	}
	if len(c.Nodes) == 0 {
		cfg.Bootstrap = true
	} else {
		cfg.Join = []string{c.Nodes[0].Server.GRPCAddr()}
	}
	if modify != nil {
		modify(&cfg)
	}
	rn, err := server.StartNode(cfg)
	if err != nil {
		return nil, err
	}
	c.Nodes = append(c.Nodes, rn)
	return rn, nil
}

// Endpoints returns the nodes' gRPC addresses.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Server.GRPCAddr())
	}
	return out
}

// Stop stops every node and removes their data.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
	_ = os.RemoveAll(c.dir)
}
