package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/cairndb/cairn/raftnode"
	"github.com/cairndb/cairn/server"
	"github.com/spf13/cobra"
)

func newDevCmd() *cobra.Command {
	var dataDir, host, logLevel string
	var httpPort, grpcPort, raftPort int
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a three-node cluster on loopback in one process",
		Long: `Run a three-node cluster on loopback in one process, for development.

Data lives under --data-dir (./cairn-data by default) and survives restarts:
run it again and the cluster comes back with its data. Node i serves REST on
--http-port+i-1, gRPC on --grpc-port+i-1 and Raft on --raft-port+i-1.

Authentication is on: the first run writes an HMAC secret to
<data-dir>/auth-secret, and every run prints an admin token signed with it
(tokens stay valid across restarts; mint others with cairn token issue).
The nodes talk to each other over mutual TLS with a CA kept in
<data-dir>/tls; the client API stays plain HTTP and gRPC on --host.`,
		Example: `  cairn dev
  cairn dev --data-dir /tmp/cairn --http-port 8301 --grpc-port 8401 --raft-port 8501`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			return runDev(cmd.OutOrStdout(), dataDir, host, logLevel, httpPort, grpcPort, raftPort)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&dataDir, "data-dir", "cairn-data", "directory for the three nodes' state")
	fl.StringVar(&host, "host", "127.0.0.1", "address to listen on")
	fl.IntVar(&httpPort, "http-port", 7301, "REST port of the first node")
	fl.IntVar(&grpcPort, "grpc-port", 7401, "gRPC port of the first node")
	fl.IntVar(&raftPort, "raft-port", 7501, "Raft port of the first node")
	fl.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}

func runDev(out io.Writer, dataDir, host, logLevel string, httpPort, grpcPort, raftPort int) error {
	logger, err := newLogger(logLevel)
	if err != nil {
		return err
	}
	const n = 3
	var initial []raftnode.Server
	for i := 0; i < n; i++ {
		initial = append(initial, raftnode.Server{
			ID: fmt.Sprintf("n%d", i+1), Address: fmt.Sprintf("%s:%d", host, raftPort+i), Voter: true,
		})
	}
	var ids []string
	for _, s := range initial {
		ids = append(ids, s.ID)
	}
	sec, err := prepareDevSecurity(dataDir, host, ids)
	if err != nil {
		return err
	}
	var nodes []*server.RunningNode
	defer func() {
		for _, rn := range nodes {
			rn.Stop()
		}
	}()
	for i := 0; i < n; i++ {
		rc := raftnode.DefaultConfig()
		rc.ID, rc.BindAddr, rc.LogLevel = initial[i].ID, initial[i].Address, logLevel
		rc.TLS = sec.nodeTLS[rc.ID]
		sc := server.DefaultConfig()
		sc.GRPCAddr = fmt.Sprintf("%s:%d", host, grpcPort+i)
		sc.HTTPAddr = fmt.Sprintf("%s:%d", host, httpPort+i)
		sc.Logger = logger.With("node", rc.ID)
		sc.Auth = sec.authConfig()
		rn, err := server.StartNode(server.NodeConfig{
			Dir: filepath.Join(dataDir, rc.ID), Raft: rc, Server: sc, InitialCluster: initial,
		})
		if err != nil {
			return fmt.Errorf("node %s: %w", rc.ID, err)
		}
		nodes = append(nodes, rn)
	}
	if err := waitReady(nodes, 30*time.Second); err != nil {
		return err
	}
	abs, _ := filepath.Abs(dataDir)
	fmt.Fprintf(out, "cairn dev: %d nodes on %s, data in %s (kept across restarts)\n", n, host, abs)
	fmt.Fprintf(out, "auth on (HMAC secret in %s), mutual TLS between the nodes (CA in %s)\n\n", sec.secretFile, sec.tlsDir)
	for _, rn := range nodes {
		role := "follower"
		if rn.Node.IsLeader() {
			role = "leader"
		}
		fmt.Fprintf(out, "  %s  REST http://%s  gRPC %s  (%s)\n", rn.Node.ID(), rn.Server.HTTPAddr(), rn.Server.GRPCAddr(), role)
	}
	h1, h2, h3 := nodes[0].Server.HTTPAddr(), nodes[1].Server.HTTPAddr(), nodes[2].Server.HTTPAddr()
	fmt.Fprintf(out, `
An admin token, valid for %d days (mint others with: cairn token issue --auth-secret-file %s --role viewer --namespaces demo):

  export CAIRN_TOKEN=%s

Try it (any node answers; followers forward writes to the leader):

  curl -H "Authorization: Bearer $CAIRN_TOKEN" -X PUT http://%s/v1/namespaces/demo -d '{}'
  curl -H "Authorization: Bearer $CAIRN_TOKEN" -X PUT http://%s/v1/namespaces/demo/objects/room-1/keys/greeting -d '{"value": {"text": "hello"}}'
  curl -H "Authorization: Bearer $CAIRN_TOKEN" http://%s/v1/namespaces/demo/objects/room-1/keys/greeting

Press Ctrl-C to stop.
`, int(devTokenTTL.Hours()/24), sec.secretFile, sec.adminToken, h1, h2, h3)
	waitForSignal()
	fmt.Fprintln(out, "stopping")
	return nil
}

// waitReady waits until every node knows a leader, has caught up, and
// every node's addresses are published.
func waitReady(nodes []*server.RunningNode, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ready := true
		for _, rn := range nodes {
			members, err := rn.FSM.Members()
			ready = ready && err == nil && len(members) == len(nodes) && rn.Node.CaughtUp()
		}
		if ready {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("the cluster did not become ready in time; is another cairn using these ports? (see --http-port, --grpc-port, --raft-port)")
}
