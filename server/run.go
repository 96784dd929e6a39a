package server

import (
	"bytes"
	"context"
	"crypto/tls"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
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
	// History bounds the change history kept for watch streams.
	History HistoryConfig

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
	// JoinAsNonvoter joins as a non-voting member (a read replica) that
	// AddMember without nonvoter can later promote.
	JoinAsNonvoter bool
	// JoinToken is the bearer token sent with the join request (it needs
	// the admin role). Empty sends none, which suits a cluster without
	// authentication.
	JoinToken string
	// JoinTLS, when set, secures the join request to the members' client
	// API, for gRPC addresses and https:// ones alike. nil means plain
	// text for gRPC addresses, and the system roots for https:// ones.
	JoinTLS *tls.Config
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
	// A damaged Raft log or snapshot is refused here, before anything
	// serves from it; the FSM checks its own database when it opens (a
	// damaged one is set aside and rebuilt). Each check reads its files
	// whole (gigabytes for a large state), so the two run side by side.
	raftChecked := make(chan error, 1)
	var check DataCheck
	go func() {
		raftChecked <- check.checkRaft(cfg.Dir, true)
	}()
	hub := NewWatchHub(cfg.History, 0)
	f, err := fsm.Open(fsm.Options{Dir: filepath.Join(cfg.Dir, "fsm"), NoSync: cfg.FSMNoSync, Observer: hub})
	if cerr := <-raftChecked; cerr != nil {
		if err == nil {
			_ = f.Close()
		}
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	for _, w := range check.Warnings { // what the check repaired
		cfg.Server.withDefaults().Logger.Warn(w)
	}
	hub.Restored(f.AppliedIndex()) // history starts at the state as opened
	rcfg := cfg.Raft
	rcfg.Dir = filepath.Join(cfg.Dir, "raft")
	node, err := raftnode.New(rcfg, f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	srv, err := New(cfg.Server, Deps{Node: node, State: f, Watch: hub, DataDirs: []string{filepath.Join(cfg.Dir, "fsm"), rcfg.Dir}})
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
		err = rn.join(cfg)
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

// Shutdown stops the node gracefully within ctx: a leader first hands
// leadership to another voter and waits until it has learnt of the new
// leader (so the cluster does not wait out an election, and forwarded
// writes find the new leader at once), then the API drains
// (Server.Shutdown), then Raft and the state close. Each step is logged, so
// an operator can tell a drain that hangs from one that finished.
func (rn *RunningNode) Shutdown(ctx context.Context) {
	log := rn.Server.log
	if rn.Node.IsLeader() {
		if servers, err := rn.Node.Servers(); err == nil && countVoters(servers) > 1 {
			// A leader whose peers are gone (the whole cluster stopping)
			// cannot hand over; it must not spend the drain trying.
			hctx, cancel := context.WithTimeout(ctx, handOverBudget)
			rn.handOverForShutdown(hctx)
			cancel()
		}
	}
	rn.Server.Shutdown(ctx)
	log.Info("shutdown: API drained")
	_ = rn.Node.Shutdown()
	_ = rn.FSM.Close()
	log.Info("shutdown: complete")
}

// handOverAttempts bounds the leadership transfers a stopping leader
// tries: one fails when its target does not win the election within an
// election timeout (a slow or busy peer), and the next may pick another.
const handOverAttempts = 3

// handOverBudget bounds the whole hand-over: a transfer to a healthy voter
// takes well under a second.
const handOverBudget = 5 * time.Second

// handOverForShutdown hands leadership to another voter before this node
// stops, trying again when a transfer fails; when none succeeds, the
// other voters elect a leader once this one is gone.
func (rn *RunningNode) handOverForShutdown(ctx context.Context) {
	log := rn.Server.log
	log.Info("shutdown: handing leadership over")
	for attempt := 1; ; attempt++ {
		to, err := rn.Server.handOverLeadership(ctx, "")
		if err == nil {
			log.Info("shutdown: leadership handed over", "to", to)
			return
		}
		if attempt == handOverAttempts || ctx.Err() != nil || !rn.Node.IsLeader() {
			log.Warn("shutdown: leadership hand-over failed; the other voters elect a leader", "err", err)
			return
		}
		log.Warn("shutdown: leadership hand-over failed; trying again", "err", err)
	}
}

func countVoters(servers []raftnode.Server) int {
	n := 0
	for _, s := range servers {
		if s.Voter {
			n++
		}
	}
	return n
}

// errJoinRefused marks a join request a member refused for good (bad
// token, missing role, a node certificate the cluster does not trust):
// trying again cannot help.
var errJoinRefused = errors.New("server: join refused")

// join asks the members at cfg.Join, in turn, to add this node as a voter.
func (rn *RunningNode) join(cfg NodeConfig) error {
	addrs, timeout := cfg.Join, cfg.JoinTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	req := &cairnv1.AddMemberRequest{
		Id: rn.Node.ID(), RaftAddr: rn.Node.RaftAddr(),
		GrpcAddr: rn.Server.GRPCAddr(), HttpAddr: rn.Server.HTTPAddr(),
		Nonvoter: cfg.JoinAsNonvoter,
	}
	deadline := time.Now().Add(timeout)
	var errs []error
	for time.Now().Before(deadline) {
		errs = errs[:0]
		for _, addr := range addrs {
			err := joinVia(addr, req, cfg.JoinToken, cfg.JoinTLS)
			if err == nil {
				return nil
			}
			if errors.Is(err, errJoinRefused) {
				return fmt.Errorf("server: could not join through %s: %w", addr, err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
		}
		time.Sleep(time.Second) // the members may still be starting
	}
	return fmt.Errorf("server: could not join through %s: %w", strings.Join(addrs, ", "), errors.Join(errs...))
}

// joinVia sends an AddMember request to addr over REST when addr starts
// with http:// or https://, otherwise over gRPC, falling back to REST when
// addr does not speak gRPC. token, when set, is sent as the bearer token.
func joinVia(addr string, req *cairnv1.AddMemberRequest, token string, tlsCfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		return joinREST(ctx, addr, req, token, tlsCfg)
	}
	creds, scheme := insecure.NewCredentials(), "http://"
	if tlsCfg != nil {
		creds, scheme = credentials.NewTLS(tlsCfg.Clone()), "https://"
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	gctx := ctx
	if token != "" {
		gctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	_, gerr := cairnv1.NewClusterServiceClient(conn).AddMember(gctx, req)
	if gerr == nil {
		return nil
	}
	switch status.Code(gerr) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition:
		return fmt.Errorf("%w: %w", errJoinRefused, gerr)
	}
	if rerr := joinREST(ctx, scheme+addr, req, token, tlsCfg); rerr == nil {
		return nil
	}
	return gerr
}

func joinREST(ctx context.Context, base string, req *cairnv1.AddMemberRequest, token string, tlsCfg *tls.Config) error {
	body, err := json.Marshal(map[string]any{
		"id": req.Id, "raft_addr": req.RaftAddr, "grpc_addr": req.GrpcAddr, "http_addr": req.HttpAddr, "nonvoter": req.Nonvoter,
	})
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/v1/cluster/members", bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if token != "" {
		hreq.Header.Set("Authorization", "Bearer "+token)
	}
	client := http.DefaultClient
	if tlsCfg != nil {
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg.Clone(), ForceAttemptHTTP2: true}}
		defer client.CloseIdleConnections()
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: HTTP %d: %s", errJoinRefused, resp.StatusCode, bytes.TrimSpace(msg))
	default:
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}
