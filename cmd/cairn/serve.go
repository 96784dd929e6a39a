package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cairndb/cairn/raftnode"
	"github.com/cairndb/cairn/server"
	"github.com/spf13/cobra"
)

type serveFlags struct {
	id, dataDir                  string
	raftAddr, raftAdvertise      string
	grpcAddr, httpAddr           string
	grpcAdvertise, httpAdvertise string
	initialCluster               string
	bootstrap                    bool
	join                         []string
	maxValueBytes                int
	maxInflightRequests          int
	maxInflightProposals         int
	minFreeDiskBytes             int64
	maxMappedMemoryBytes         int64
	corsOrigins                  []string
	historyRevisions             int
	joinAsNonvoter               bool
	configFile, logFormat        string
	adminAddr                    string
	historyBytes                 int
	logLevel                     string
	snapshotThreshold            uint64
	snapshotInterval             time.Duration
	trailingLogs                 uint64
	sec                          securityFlags // security.go
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one node of a cairn cluster",
		Long: `Run one node of a cairn cluster.

Form a new cluster either by giving every node the same --initial-cluster,
or with --bootstrap on one node and --join on the others. A node that
already has state ignores all three and rejoins its cluster.

Every flag may also come from the environment as CAIRN_<FLAG>, for example
CAIRN_DATA_DIR for --data-dir.

Every API call needs a bearer token (see cairn token issue) once
authentication is configured with --auth-secret-file (or CAIRN_AUTH_SECRET),
--auth-public-key-file or --auth-jwks-file; without any of them the node
refuses to start unless --insecure-no-auth is given. --cluster-ca,
--cluster-cert and --cluster-key put Raft and forwarding between nodes on
mutual TLS; --tls-cert and --tls-key put the client API on TLS (see cairn
certs). SIGHUP re-reads the public key and JWKS files.`,
		Example: `  cairn serve --id n1 --data-dir /var/lib/cairn --raft-addr 10.0.0.1:7500 \
    --grpc-addr 10.0.0.1:7400 --http-addr 10.0.0.1:7300 \
    --initial-cluster n1=10.0.0.1:7500,n2=10.0.0.2:7500,n3=10.0.0.3:7500

  cairn serve --id n1 --data-dir d1 --raft-addr 127.0.0.1:7501 --grpc-addr 127.0.0.1:7401 --http-addr 127.0.0.1:7301 --bootstrap
  cairn serve --id n2 --data-dir d2 --raft-addr 127.0.0.1:7502 --grpc-addr 127.0.0.1:7402 --http-addr 127.0.0.1:7302 --join 127.0.0.1:7401`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			if f.configFile != "" {
				if err := bindConfigFile(cmd.Flags(), f.configFile); err != nil {
					return err
				}
			}
			return runServe(f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.id, "id", "", "this node's cluster-unique id (required)")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for this node's state (required)")
	fl.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7500", "host:port for Raft traffic between nodes")
	fl.StringVar(&f.raftAdvertise, "raft-advertise", "", "Raft address peers should dial (default: --raft-addr)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:7400", "host:port for the gRPC API")
	fl.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:7300", "host:port for the REST API, /healthz, /readyz and /metrics")
	fl.StringVar(&f.grpcAdvertise, "grpc-advertise", "", "gRPC address other nodes should use (default: --grpc-addr)")
	fl.StringVar(&f.httpAdvertise, "http-advertise", "", "REST address to publish (default: --http-addr)")
	fl.StringVar(&f.initialCluster, "initial-cluster", "", "form a new cluster: id=raftaddr,id=raftaddr,... (the same on every node)")
	fl.BoolVar(&f.bootstrap, "bootstrap", false, "form a new one-node cluster of this node")
	fl.StringSliceVar(&f.join, "join", nil, "join the cluster through a member's gRPC or http:// address (repeatable)")
	fl.IntVar(&f.maxValueBytes, "max-value-bytes", 1<<20, "largest value one key may hold")
	sd := server.DefaultConfig()
	fl.IntVar(&f.maxInflightRequests, "max-inflight-requests", sd.MaxInflightRequests, "API calls served at once; past it calls fail at once with RESOURCE_EXHAUSTED (HTTP 429) and a retry hint")
	fl.IntVar(&f.maxInflightProposals, "max-inflight-proposals", sd.MaxInflightProposals, "writes the leader has in flight through Raft; past it writes fail at once with RESOURCE_EXHAUSTED (HTTP 429) and a retry hint")
	fl.Int64Var(&f.maxMappedMemoryBytes, "max-mapped-memory-bytes", sd.MaxMappedMemoryBytes, "resident pages of the state database's memory map kept before they are handed back to the kernel's page cache (bounds RSS); -1 turns the bound off")
	fl.Int64Var(&f.minFreeDiskBytes, "min-free-disk-bytes", sd.MinFreeDiskBytes, "free space kept in the data directory: below it on any member, writes are refused (deletes and reads go on); -1 turns the check off")
	fl.StringSliceVar(&f.corsOrigins, "cors-origin", nil, "browser origin allowed to call the REST API cross-origin (repeatable; * for any)")
	fl.StringVar(&f.configFile, "config", "", "read settings from this file: one \"flag = value\" per line (command line and CAIRN_* win)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.adminAddr, "admin-addr", "", "serve Go pprof profiles (/debug/pprof/) on this host:port; off when empty")
	fl.BoolVar(&f.joinAsNonvoter, "join-as-nonvoter", false, "with --join: join as a non-voting member (a read replica) to promote later")
	fl.IntVar(&f.historyRevisions, "watch-history-revisions", 10000, "revisions of change history kept for watches to resume from")
	fl.IntVar(&f.historyBytes, "watch-history-bytes", 64<<20, "bytes of change history kept for watches to resume from")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	d := raftnode.DefaultConfig()
	fl.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", d.SnapshotThreshold, "new Raft log entries that trigger a snapshot")
	fl.DurationVar(&f.snapshotInterval, "snapshot-interval", d.SnapshotInterval, "how often the snapshot threshold is checked")
	fl.Uint64Var(&f.trailingLogs, "trailing-logs", d.TrailingLogs, "Raft log entries kept after a snapshot, for lagging followers to catch up without one")
	f.sec.register(fl)
	return cmd
}

// parseInitialCluster parses "id=addr,id=addr".
func parseInitialCluster(s string) ([]raftnode.Server, error) {
	if s == "" {
		return nil, nil
	}
	var out []raftnode.Server
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--initial-cluster: %q is not id=host:port", part)
		}
		if seen[id] {
			return nil, fmt.Errorf("--initial-cluster: id %q appears twice", id)
		}
		seen[id] = true
		out = append(out, raftnode.Server{ID: id, Address: addr, Voter: true})
	}
	return out, nil
}

func (f serveFlags) nodeConfig() (server.NodeConfig, error) {
	var errs []error
	if f.id == "" {
		errs = append(errs, errors.New("--id is required"))
	}
	if f.dataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	initial, err := parseInitialCluster(f.initialCluster)
	if err != nil {
		errs = append(errs, err)
	}
	if len(initial) > 0 {
		found := false
		for _, s := range initial {
			found = found || s.ID == f.id
		}
		if !found {
			errs = append(errs, fmt.Errorf("--initial-cluster does not list this node's --id %q", f.id))
		}
	}
	n := 0
	for _, on := range []bool{len(initial) > 0, f.bootstrap, len(f.join) > 0} {
		if on {
			n++
		}
	}
	if n > 1 {
		errs = append(errs, errors.New("use only one of --initial-cluster, --bootstrap and --join"))
	}
	rc := raftnode.DefaultConfig()
	rc.ID, rc.BindAddr, rc.AdvertiseAddr, rc.LogLevel = f.id, f.raftAddr, f.raftAdvertise, f.logLevel
	rc.SnapshotThreshold, rc.SnapshotInterval, rc.TrailingLogs = f.snapshotThreshold, f.snapshotInterval, f.trailingLogs
	sc := server.DefaultConfig()
	sc.GRPCAddr, sc.HTTPAddr = f.grpcAddr, f.httpAddr
	sc.AdvertiseGRPCAddr, sc.AdvertiseHTTPAddr = f.grpcAdvertise, f.httpAdvertise
	sc.MaxValueBytes = f.maxValueBytes
	sc.MaxInflightRequests, sc.MaxInflightProposals = f.maxInflightRequests, f.maxInflightProposals
	sc.MinFreeDiskBytes = f.minFreeDiskBytes
	sc.MaxMappedMemoryBytes = f.maxMappedMemoryBytes
	sec, err := f.sec.resolve(len(f.join) > 0)
	if err != nil {
		errs = append(errs, err)
	}
	rc.TLS, sc.Auth, sc.TLS = sec.raftTLS, sec.auth, sec.serverTLS
	sc.CORSOrigins = f.corsOrigins
	if err := sc.Validate(); err != nil {
		errs = append(errs, err)
	}
	logger, err := newLoggerFormat(f.logLevel, f.logFormat)
	if err != nil {
		errs = append(errs, err)
	}
	sc.Logger = logger
	if err := errors.Join(errs...); err != nil {
		return server.NodeConfig{}, err
	}
	return server.NodeConfig{
		Dir: f.dataDir, Raft: rc, Server: sc,
		InitialCluster: initial, Bootstrap: f.bootstrap, Join: f.join,
		History:        server.HistoryConfig{MaxRevisions: f.historyRevisions, MaxBytes: f.historyBytes},
		JoinAsNonvoter: f.joinAsNonvoter,
		JoinToken:      sec.joinToken, JoinTLS: sec.joinTLS,
	}, nil
}

func runServe(f serveFlags) error {
	cfg, err := f.nodeConfig()
	if err != nil {
		return err
	}
	rn, err := server.StartNode(cfg)
	if err != nil {
		return err
	}
	log := cfg.Server.Logger
	if f.adminAddr != "" {
		if err := serveAdmin(f.adminAddr, log); err != nil {
			rn.Stop()
			return err
		}
	}
	log.Info("cairn node serving", "id", f.id, "raft", rn.Node.RaftAddr(), "grpc", rn.Server.GRPCAddr(), "http", rn.Server.HTTPAddr())
	warnInsecure(log, security{auth: cfg.Server.Auth, raftTLS: cfg.Raft.TLS})
	stopReload := reloadKeysOnHUP(log, rn.Server)
	defer stopReload()
	// SIGINT or SIGTERM drains: leadership handed over, requests in flight
	// finished (up to drainTimeout), watch streams ended with a revision to
	// resume from. A second signal exits at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	log.Info("shutting down gracefully; a second signal exits at once")
	go func() {
		<-sigs
		log.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	rn.Shutdown(ctx)
	return nil
}

// drainTimeout bounds a graceful stop: the leadership hand-over and the
// requests in flight. Service managers must wait longer before they kill
// (contrib/systemd/cairn.service, docker-compose.yml; a test checks).
const drainTimeout = 30 * time.Second

// waitForSignal blocks until SIGINT or SIGTERM.
func waitForSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
	signal.Stop(ch)
}
