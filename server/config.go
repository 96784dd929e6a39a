package server

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cairndb/cairn/auth"
)

// Config configures a Server. The zero value of each limit means its
// default from DefaultConfig.
type Config struct {
	// GRPCAddr and HTTPAddr are the host:port the gRPC API and the REST
	// gateway listen on. Required; port 0 picks a free port.
	GRPCAddr string
	HTTPAddr string
	// AdvertiseGRPCAddr and AdvertiseHTTPAddr are the addresses other
	// nodes and clients are told to use; empty means the bound address.
	AdvertiseGRPCAddr string
	AdvertiseHTTPAddr string

	// MaxValueBytes is the largest value one key may hold. 0 means 1 MiB.
	MaxValueBytes int
	// MaxBatchKeys bounds the keys of one batch get or batch write. 0
	// means 128.
	MaxBatchKeys int
	// MaxRequestBytes bounds the keys and values one write carries. 0 means
	// 8 MiB.
	MaxRequestBytes int
	// MaxTxnOps bounds the compares, the success ops and the failure ops
	// of one transaction (each). 0 means 128.
	MaxTxnOps int
	// RequestRetention is how long, in log time, the result of a write
	// with a request_id is remembered, so that a retry within it is
	// answered without applying twice. 0 means 10 minutes.
	RequestRetention time.Duration
	// LeaderWait bounds how long a request waits for a leader to be
	// elected before it fails with Unavailable. 0 means 5 s.
	LeaderWait time.Duration
	// RequestTimeout bounds a request whose caller set no deadline. 0
	// means 15 s.
	RequestTimeout time.Duration

	// Auth configures the bearer tokens every API call must carry. The
	// zero value means no authentication: every call is allowed (the CLI
	// refuses that unless told --insecure-no-auth).
	Auth auth.Config
	// TLS configures TLS on the client API, gRPC and REST. The zero value
	// means plain text.
	TLS TLSConfig
	// MaxConcurrentStreams bounds the concurrent calls on one client
	// connection to the gRPC port. 0 means 1024.
	MaxConcurrentStreams uint32
	// MaxInflightRequests bounds the unary API calls this node serves at
	// once; past it calls fail at once with RESOURCE_EXHAUSTED (HTTP 429)
	// and a retry hint. 0 means 4096.
	MaxInflightRequests int
	// MaxInflightProposals bounds the writes the leader has handed to Raft
	// and not yet applied (its own clients' and those followers forward);
	// past it writes fail at once the same way, so the latency of admitted
	// writes stays bounded: near MaxInflightProposals divided by the rate
	// the leader applies writes at. 0 means 512.
	MaxInflightProposals int
	// MaxHeaderBytes bounds the headers of a REST request and the metadata
	// of a gRPC call. 0 means 64 KiB.
	MaxHeaderBytes int
	// HTTPReadTimeout bounds reading one REST request, body included; 0
	// means 60 s. HTTPIdleTimeout closes keep-alive connections idle that
	// long; 0 means 120 s. Responses have no write timeout, as streaming
	// responses (watches) last as long as their client wants.
	HTTPReadTimeout time.Duration
	HTTPIdleTimeout time.Duration

	// AlarmConcurrency bounds the webhook deliveries the leader makes at
	// once, over all namespaces; 0 means 64. AlarmNamespaceConcurrency
	// bounds those of one namespace, so that one slow endpoint cannot hold
	// every slot; 0 means 32.
	AlarmConcurrency          int
	AlarmNamespaceConcurrency int
	// AlarmPollInterval is how often the leader's scheduler looks for due
	// alarms (it also wakes when an alarm is written); 0 means 20 ms.
	AlarmPollInterval time.Duration

	// MinFreeDiskBytes is the free-space reserve of the node's data
	// directories: while any member's free space is below its reserve the
	// leader refuses writes that grow the state (ResourceExhausted); deletes
	// and reads go on. 0 means 128 MiB; a negative value turns the check off
	// on this node.
	MinFreeDiskBytes int64

	// MaxMappedMemoryBytes bounds the resident pages of the state
	// database's memory map: past it the node hands them back to the
	// kernel, which keeps them in its page cache (memory.go). 0 means
	// 256 MiB; a negative value turns the bound off.
	MaxMappedMemoryBytes int64

	// CORSOrigins are the browser origins the REST API answers
	// cross-origin requests from ("*" for any); empty means none.
	CORSOrigins []string

	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Limits that are not configurable.
const (
	// DefaultListLimit is the page size of a listing that gives none;
	// MaxListLimit the largest page size one may ask for.
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// maxPageBytes ends a page of keys early rather than let its keys and
	// values pass this size (so that, with values of up to 1 MiB, a page
	// stays under gRPC's default 4 MiB message limit); the page token
	// continues it.
	maxPageBytes = 2 << 20
)

// DefaultConfig returns the default limits.
func DefaultConfig() Config {
	return Config{
		MaxValueBytes:    1 << 20,
		MaxBatchKeys:     128,
		MaxRequestBytes:  8 << 20,
		MaxTxnOps:        128,
		RequestRetention: 10 * time.Minute,
		LeaderWait:       5 * time.Second,
		RequestTimeout:   15 * time.Second,

		MaxConcurrentStreams: 1024,
		MaxInflightRequests:  4096,
		MaxInflightProposals: 512,
		MaxHeaderBytes:       64 << 10,
		HTTPReadTimeout:      60 * time.Second,
		HTTPIdleTimeout:      120 * time.Second,

		AlarmConcurrency:          64,
		AlarmNamespaceConcurrency: 32,
		AlarmPollInterval:         20 * time.Millisecond,

		MinFreeDiskBytes:     128 << 20,
		MaxMappedMemoryBytes: 256 << 20,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = d.MaxValueBytes
	}
	if c.MaxBatchKeys == 0 {
		c.MaxBatchKeys = d.MaxBatchKeys
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = d.MaxTxnOps
	}
	if c.RequestRetention == 0 {
		c.RequestRetention = d.RequestRetention
	}
	if c.LeaderWait == 0 {
		c.LeaderWait = d.LeaderWait
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = d.MaxConcurrentStreams
	}
	if c.MaxInflightRequests == 0 {
		c.MaxInflightRequests = d.MaxInflightRequests
	}
	if c.MaxInflightProposals == 0 {
		c.MaxInflightProposals = d.MaxInflightProposals
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if c.HTTPReadTimeout == 0 {
		c.HTTPReadTimeout = d.HTTPReadTimeout
	}
	if c.HTTPIdleTimeout == 0 {
		c.HTTPIdleTimeout = d.HTTPIdleTimeout
	}
	if c.AlarmConcurrency == 0 {
		c.AlarmConcurrency = d.AlarmConcurrency
	}
	if c.AlarmNamespaceConcurrency == 0 {
		c.AlarmNamespaceConcurrency = d.AlarmNamespaceConcurrency
	}
	if c.AlarmPollInterval == 0 {
		c.AlarmPollInterval = d.AlarmPollInterval
	}
	if c.MinFreeDiskBytes == 0 {
		c.MinFreeDiskBytes = d.MinFreeDiskBytes
	}
	if c.MaxMappedMemoryBytes == 0 {
		c.MaxMappedMemoryBytes = d.MaxMappedMemoryBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports everything that is wrong with c.
func (c Config) Validate() error {
	var errs []error
	if c.GRPCAddr == "" {
		errs = append(errs, errors.New("server: GRPCAddr is required"))
	}
	if c.HTTPAddr == "" {
		errs = append(errs, errors.New("server: HTTPAddr is required"))
	}
	if c.MaxValueBytes < 0 || c.MaxBatchKeys < 0 || c.MaxRequestBytes < 0 || c.MaxTxnOps < 0 {
		errs = append(errs, errors.New("server: limits must not be negative"))
	}
	if c.MaxValueBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("server: MaxValueBytes %d is over the 64 MiB ceiling", c.MaxValueBytes))
	}
	if c.MaxRequestBytes != 0 && c.MaxValueBytes > c.MaxRequestBytes {
		errs = append(errs, fmt.Errorf("server: MaxValueBytes %d exceeds MaxRequestBytes %d", c.MaxValueBytes, c.MaxRequestBytes))
	}
	if c.LeaderWait < 0 || c.RequestTimeout < 0 || c.RequestRetention < 0 || c.HTTPReadTimeout < 0 || c.HTTPIdleTimeout < 0 {
		errs = append(errs, errors.New("server: durations must not be negative"))
	}
	if c.AlarmConcurrency < 0 || c.AlarmNamespaceConcurrency < 0 || c.AlarmPollInterval < 0 {
		errs = append(errs, errors.New("server: alarm concurrency and poll interval must not be negative"))
	}
	if c.MaxHeaderBytes < 0 {
		errs = append(errs, errors.New("server: MaxHeaderBytes must not be negative"))
	}
	if c.MaxInflightRequests < 0 || c.MaxInflightProposals < 0 {
		errs = append(errs, errors.New("server: MaxInflightRequests and MaxInflightProposals must not be negative"))
	}
	if c.TLS.Enabled() && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("server: TLS needs CertFile and KeyFile together"))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
