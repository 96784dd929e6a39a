// Package client is the Go client of cairn: it talks gRPC to a list of
// endpoints, fails over when a node is unavailable, gives every write a
// request id so that retries never apply twice, turns errors into values
// that errors.Is understands, and resumes watch streams where they broke.
package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Config configures a Client. Only Endpoints is required.
type Config struct {
	// Endpoints are the gRPC addresses (host:port) of cluster nodes. Any
	// node serves any request.
	Endpoints []string
	// Token is a bearer token sent with every call; empty sends none.
	Token string
	// TLS secures the connections; nil means plain TCP.
	TLS *tls.Config
	// RequestTimeout bounds each call whose context has no deadline. 0
	// means 15 s.
	RequestTimeout time.Duration
	// RetryFor bounds how long a call keeps trying other endpoints while
	// the cluster is unavailable (an election, a node down). 0 means 10 s.
	RetryFor time.Duration
	// MaxMessageBytes bounds received messages. 0 means 64 MiB.
	MaxMessageBytes int
}

// Client is safe for concurrent use. Close it when done.
type Client struct {
	cfg   Config
	conns []*grpc.ClientConn

	mu      sync.Mutex
	current int // index of the endpoint calls go to first
}

// New connects (lazily) to cfg.Endpoints.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("client: Config.Endpoints is empty")
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 15 * time.Second
	}
	if cfg.RetryFor == 0 {
		cfg.RetryFor = 10 * time.Second
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = 64 << 20
	}
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxMessageBytes), grpc.MaxCallSendMsgSize(cfg.MaxMessageBytes)),
	}
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: cfg.Token, secure: cfg.TLS != nil}))
	}
	c := &Client{cfg: cfg}
	for _, ep := range cfg.Endpoints {
		conn, err := grpc.NewClient(ep, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: endpoint %q: %w", ep, err)
		}
		c.conns = append(c.conns, conn)
	}
	return c, nil
}

// Close closes every connection.
func (c *Client) Close() error {
	var errs []error
	for _, conn := range c.conns {
		errs = append(errs, conn.Close())
	}
	return errors.Join(errs...)
}

// bearer sends the token as gRPC metadata "authorization".
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// call runs f against the current endpoint, moving to the next one and
// trying again while the cluster answers UNAVAILABLE (or the endpoint
// cannot be reached), for up to RetryFor. A call that runs out of time
// moves later calls to the next endpoint. f must be safe to repeat: reads
// are, and writes carry a request id.
func (c *Client) call(ctx context.Context, f func(ctx context.Context, conn *grpc.ClientConn) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.RequestTimeout)
		defer cancel()
	}
	deadline := time.Now().Add(c.cfg.RetryFor)
	backoff := 25 * time.Millisecond
	for {
		i, conn := c.endpoint()
		err := f(ctx, conn)
		if err == nil {
			return nil
		}
		if status.Code(err) == codes.DeadlineExceeded {
			// The endpoint may hang (a paused process, a blackholed
			// link) rather than refuse: the next call tries another.
			c.failed(i)
		}
		if !retryable(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return wrap(err)
		}
		c.failed(i)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return wrap(err)
		case <-t.C:
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func (c *Client) endpoint() (int, *grpc.ClientConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current, c.conns[c.current]
}

// failed moves calls off endpoint i (if no other call has already).
func (c *Client) failed(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current == i {
		c.current = (i + 1) % len(c.conns)
	}
}

func retryable(err error) bool {
	return status.Code(err) == codes.Unavailable
}

// newRequestID returns a new request id.
func newRequestID() string {
	// 48 bits of Unix milliseconds, then 80 random bits (the layout of a
	// UUIDv7): unique, and ordered by time, so the cluster's index of
	// request ids grows at its end instead of at a random page per write.
	var b [16]byte
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("client: no randomness: %v", err))
	}
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	return hex.EncodeToString(b[:])
}

func (c *Client) objects(conn *grpc.ClientConn) cairnv1.ObjectServiceClient {
	return cairnv1.NewObjectServiceClient(conn)
}
