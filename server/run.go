package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/raftnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// NodeConfig describes a whole cairn node: its state machine, its Raft
// member and its API server, and how it enters a cluster.
type NodeConfig struct {
	// Dir is the node's data directory: the FSM lives in Dir/fsm, Raft's
	// log and snapshots in Dir/raft. Required.
	Dir string
	// Raft configures the Raft member; its Dir is set from Dir.
	Raft raftnode.Config
	// Server configures the API.
	Server Config
	// FSMNoSync turns off fsync of the FSM database (tests only).
	FSMNoSync bool

	// InitialCluster, when set, forms a new cluster of these voters; every
	// node of the cluster gets the same list. Ignored once state exists.
	InitialCluster []raftnode.Server
	// Bootstrap forms a one-node cluster of this node. Ignored once state
	// exists.
	Bootstrap bool
	// Join lists API addresses (gRPC host:port, or http://host:port) of
	// members to ask for admission; tried in turn until one admits this
	// node. Ignored once state exists.
	Join []string
	// JoinTimeout bounds the attempts to join. 0 means 60 s.
	JoinTimeout time.Duration
}

// RunningNode is a started node.
type RunningNode struct {
	FSM    *fsm.FSM
	Node   *raftnode.Node
	Server *Server
}

// StartNode opens the state, starts Raft and the API, and bootstraps or
// joins as cfg says. On error everything started is stopped again.
func StartNode(cfg NodeConfig) (*RunningNode, error) {
	if cfg.Dir == "" {
		return nil, errors.New("server: NodeConfig.Dir is required")
	}
	modes := 0
	for _, on := range []bool{len(cfg.InitialCluster) > 0, cfg.Bootstrap, len(cfg.Join) > 0} {
		if on {
			modes++
		}
	}
	if modes > 1 {
		return nil, errors.New("server: use only one of initial cluster, bootstrap and join")
	}
	if err := cfg.Server.Validate(); err != nil {
		return nil, err
	}
	f, err := fsm.Open(fsm.Options{Dir: filepath.Join(cfg.Dir, "fsm"), NoSync: cfg.FSMNoSync})
	if err != nil {
		return nil, err
	}
	rcfg := cfg.Raft
	rcfg.Dir = filepath.Join(cfg.Dir, "raft")
	node, err := raftnode.New(rcfg, f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	srv, err := New(cfg.Server, Deps{Node: node, State: f})
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		_ = node.Shutdown()
		_ = f.Close()
		return nil, err
	}
	rn := &RunningNode{FSM: f, Node: node, Server: srv}
	fresh := node.Status().LastIndex == 0
	switch {
	case !fresh:
	case cfg.Bootstrap:
		err = node.Bootstrap([]raftnode.Server{{ID: node.ID(), Address: node.RaftAddr(), Voter: true}})
	case len(cfg.InitialCluster) > 0:
		err = node.Bootstrap(cfg.InitialCluster)
	case len(cfg.Join) > 0:
		err = rn.join(cfg.Join, cfg.JoinTimeout)
	}
	if err != nil {
		rn.Stop()
		return nil, err
	}
	return rn, nil
}

// Stop stops the API, then Raft, then closes the state.
func (rn *RunningNode) Stop() {
	rn.Server.Stop()
	_ = rn.Node.Shutdown()
	_ = rn.FSM.Close()
}

// join asks the members at addrs, in turn, to add this node as a voter.
func (rn *RunningNode) join(addrs []string, timeout time.Duration) error {
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	req := &cairnv1.AddMemberRequest{
		Id: rn.Node.ID(), RaftAddr: rn.Node.RaftAddr(),
		GrpcAddr: rn.Server.GRPCAddr(), HttpAddr: rn.Server.HTTPAddr(),
	}
	deadline := time.Now().Add(timeout)
	var errs []error
	for time.Now().Before(deadline) {
		errs = errs[:0]
		for _, addr := range addrs {
			err := joinVia(addr, req)
			if err == nil {
				return nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
		time.Sleep(time.Second) // the members may still be starting
	}
	return fmt.Errorf("server: could not join through %s: %w", strings.Join(addrs, ", "), errors.Join(errs...))
}

// joinVia sends an AddMember request to addr over REST when addr starts
// with http:// or https://, otherwise over gRPC, falling back to REST when
// addr does not speak gRPC.
func joinVia(addr string, req *cairnv1.AddMemberRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return joinREST(ctx, addr, req)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, gerr := cairnv1.NewClusterServiceClient(conn).AddMember(ctx, req)
	if gerr == nil {
		return nil
	}
	if rerr := joinREST(ctx, "http://"+addr, req); rerr == nil {
		return nil
	}
	return gerr
}

func joinREST(ctx context.Context, base string, req *cairnv1.AddMemberRequest) error {
	body, err := json.Marshal(map[string]any{
		"id": req.Id, "raft_addr": req.RaftAddr, "grpc_addr": req.GrpcAddr, "http_addr": req.HttpAddr,
	})
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/v1/cluster/members", bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}
