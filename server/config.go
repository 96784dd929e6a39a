package server

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
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

	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Limits that are not configurable.
const (
	// DefaultListLimit is the page size of a listing that gives none;
	// MaxListLimit the largest page size one may ask for.
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// maxPageBytes ends a page of keys early once its keys and values reach
	// this size; the page token continues it.
	maxPageBytes = 4 << 20
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
	if c.LeaderWait < 0 || c.RequestTimeout < 0 || c.RequestRetention < 0 {
		errs = append(errs, errors.New("server: durations must not be negative"))
	}
	return errors.Join(errs...)
}
