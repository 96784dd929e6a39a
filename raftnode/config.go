package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Config configures a Node. Zero durations and counts mean the value from
// DefaultConfig.
type Config struct {
	// ID is the node's stable, cluster-unique id. Required.
	ID string
	// Dir holds the Raft log and stable store (wal/) and snapshots
	// (snapshots/). Required.
	Dir string
	// BindAddr is the host:port the Raft transport listens on. Required.
	// Port 0 picks a free port (tests).
	BindAddr string
	// AdvertiseAddr is the address peers dial; empty means the bound
	// address, which must then not be an unspecified IP such as 0.0.0.0.
	AdvertiseAddr string

	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout are Raft's
	// timing; CommitTimeout bounds how long a follower waits to learn of a
	// commit when nothing else is sent.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// SnapshotThreshold is how many new log entries trigger a snapshot;
	// SnapshotInterval how often the threshold is checked.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries stay in the log after a snapshot,
	// so that a slightly lagging follower catches up without one.
	TrailingLogs uint64
	// SnapshotRetain is how many snapshots are kept on disk.
	SnapshotRetain int

	// TLS secures the Raft port, which carries both Raft and the peer API
	// (forwarded writes and reads), with mutual TLS. The zero value means
	// plain TCP: anyone who can reach the port can then read and change
	// the state, so it is for trusted networks and tests only.
	TLS TLSConfig

	// Dial, when set, opens the TCP connections this node makes to its
	// peers' Raft ports (Raft RPCs and the peer API), so that tests can cut
	// and heal links; nil means a plain net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// NoSync disables fsync of the Raft log. For tests only: without it a
	// crash may lose acknowledged writes.
	NoSync bool

	// beforeSync, for tests, is called before each background sync of the
	// log (wal.Options.BeforeSync).
	beforeSync func()
	// beforeRestore, for tests, is called before the FSM restores a
	// snapshot (an install from the leader included).
	beforeRestore func()

	// LogOutput receives Raft's log lines; nil means os.Stderr.
	LogOutput io.Writer
	// LogLevel is "debug", "info", "warn" or "error"; empty means "info".
	LogLevel string
}

// TLSConfig names the PEM files of mutual TLS among cluster members.
// Either all three are set or none (no TLS).
type TLSConfig struct {
	// CAFile holds the cluster CA certificate(s). A peer is accepted, and
	// dialed, only when its certificate chains to one of them.
	CAFile string
	// CertFile and KeyFile are this node's certificate and key, signed by
	// the cluster CA, usable for both server and client authentication,
	// and naming the host of the node's advertised Raft address as a SAN
	// (peers check it when they dial).
	CertFile string
	KeyFile  string
}

// Enabled reports whether any TLS file is set.
func (t TLSConfig) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// DefaultConfig returns the defaults for a node on a LAN.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		SnapshotThreshold:  100_000, // a snapshot is the whole state: see DESIGN.md
		SnapshotInterval:   30 * time.Second,
		TrailingLogs:       10240,
		SnapshotRetain:     2,
		LogLevel:           "info",
	}
}

// withDefaults fills the zero fields of c from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = d.ElectionTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = d.LeaderLeaseTimeout
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = d.CommitTimeout
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = d.SnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = d.SnapshotRetain
	}
	if c.LogLevel == "" {
		c.LogLevel = d.LogLevel
	}
	return c
}

// Validate reports what is wrong with c, all problems at once.
func (c Config) Validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("raftnode: ID is required"))
	}
	if c.Dir == "" {
		errs = append(errs, errors.New("raftnode: Dir is required"))
	}
	if c.BindAddr == "" {
		errs = append(errs, errors.New("raftnode: BindAddr is required"))
	}
	if c.HeartbeatTimeout < 0 || c.ElectionTimeout < 0 || c.LeaderLeaseTimeout < 0 || c.CommitTimeout < 0 || c.SnapshotInterval < 0 {
		errs = append(errs, errors.New("raftnode: durations must not be negative"))
	}
	if c.TLS.Enabled() && (c.TLS.CAFile == "" || c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("raftnode: TLS needs CAFile, CertFile and KeyFile together"))
	}
	if c.SnapshotRetain < 0 {
		errs = append(errs, errors.New("raftnode: SnapshotRetain must not be negative"))
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("raftnode: LogLevel %q is not one of debug, info, warn, error", c.LogLevel))
	}
	return errors.Join(errs...)
}
