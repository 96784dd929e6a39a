package server

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/auth"
	"github.com/cairndb/cairn/raftnode"
	"github.com/cairndb/cairn/tlsutil"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/metadata"
)

// Helpers of the security tests: a test PKI, tokens, and clusters with
// authentication and mutual TLS on.

// testAuthSecret is the HMAC secret of the secured test clusters.
var testAuthSecret = []byte("server-test-secret-0123456789-abcdefghijkl")

const (
	testIssuer   = "https://issuer.cairn.test"
	testAudience = "cairn-test"
)

// testAuthConfig accepts HS256/384/512 tokens under testAuthSecret issued
// by testIssuer for testAudience.
func testAuthConfig() auth.Config {
	return auth.Config{HMACSecret: testAuthSecret, Issuer: testIssuer, Audience: testAudience, Leeway: 5 * time.Second}
}

// validClaims are the claims of a token testAuthConfig accepts, for role
// over namespaces, valid for an hour.
func validClaims(role string, namespaces ...string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"role": role, "namespaces": namespaces, "sub": "test-" + role,
		"iss": testIssuer, "aud": testAudience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

// mustSignToken signs claims with method and key (kid set when not empty).
func mustSignToken(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s token: %v", method.Alg(), err)
	}
	return s
}

// tokenFor returns a valid HS256 token for role over namespaces.
func tokenFor(t testing.TB, role string, namespaces ...string) string {
	t.Helper()
	return mustSignToken(t, jwt.SigningMethodHS256, testAuthSecret, "", validClaims(role, namespaces...))
}

// withToken returns ctx carrying token as the call's bearer token (none
// when token is empty).
func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// testPKI is a CA in a directory, issuing certificates for 127.0.0.1.
type testPKI struct {
	ca     *tlsutil.CA
	dir    string
	caFile string
}

func mustPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	ca, err := tlsutil.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := tlsutil.WritePair(filepath.Join(dir, "ca"), ca.CertPEM(), key); err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, dir: dir, caFile: filepath.Join(dir, "ca.crt")}
}

// mustIssue writes a certificate for name (SANs 127.0.0.1 and localhost)
// and returns its certificate and key files.
func (p *testPKI) mustIssue(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	cert, key, err := p.ca.Issue(name, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(p.dir, name)
	if err := tlsutil.WritePair(base, cert, key); err != nil {
		t.Fatal(err)
	}
	return base + ".crt", base + ".key"
}

// nodeTLS returns the raftnode TLS configuration of node name.
func (p *testPKI) nodeTLS(t testing.TB, name string) raftnode.TLSConfig {
	t.Helper()
	cert, key := p.mustIssue(t, name)
	return raftnode.TLSConfig{CAFile: p.caFile, CertFile: cert, KeyFile: key}
}

// logSink collects a node's Raft log lines.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns how many lines hold s.
func (l *logSink) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// secureOptions are the options of a cluster with authentication
// (testAuthConfig) and mutual TLS of pki on; each node's Raft warnings
// go to logs[id].
func secureOptions(t testing.TB, pki *testPKI, logs map[string]*logSink) clusterOptions {
	t.Helper()
	admin := tokenFor(t, "admin", auth.AllNamespaces)
	var mu sync.Mutex
	return clusterOptions{Configure: func(id string, cfg *NodeConfig) {
		cfg.Server.Auth = testAuthConfig()
		cfg.Raft.TLS = pki.nodeTLS(t, id)
		cfg.JoinToken = admin
		if logs != nil {
			mu.Lock()
			sink := &logSink{}
			logs[id] = sink
			mu.Unlock()
			cfg.Raft.LogOutput, cfg.Raft.LogLevel = sink, "warn"
		}
	}}
}

func namespaceRequest(ns string) *cairnv1.PutNamespaceRequest {
	return &cairnv1.PutNamespaceRequest{Namespace: ns}
}

func putKeyRequest(ns, object, key string) *cairnv1.PutKeyRequest {
	return &cairnv1.PutKeyRequest{Namespace: ns, Object: object, Key: key,
		Content: &cairnv1.PutKeyRequest_BinaryValue{BinaryValue: []byte("v")}}
}

func listNamespacesRequest() *cairnv1.ListNamespacesRequest { return &cairnv1.ListNamespacesRequest{} }

// metadataCtx returns ctx carrying one outgoing metadata pair.
func metadataCtx(ctx context.Context, key, value string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, key, value)
}
