package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairndb/cairn/auth"
	"github.com/cairndb/cairn/raftnode"
	"github.com/cairndb/cairn/tlsutil"
)

// devTokenTTL is how long the admin token `cairn dev` prints is valid.
const devTokenTTL = 30 * 24 * time.Hour

// devSecurity is what `cairn dev` secures its cluster with: an HMAC
// secret for tokens (dataDir/auth-secret) and a CA for the mutual TLS
// between its nodes (dataDir/tls). Both are created on the first run and
// kept, so tokens stay valid across restarts; node certificates are
// issued afresh on every start.
type devSecurity struct {
	secret     []byte
	secretFile string
	tlsDir     string
	nodeTLS    map[string]raftnode.TLSConfig
	adminToken string
}

func prepareDevSecurity(dataDir, host string, ids []string) (*devSecurity, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, err
	}
	d := &devSecurity{secretFile: filepath.Join(dataDir, "auth-secret"), tlsDir: filepath.Join(dataDir, "tls"), nodeTLS: map[string]raftnode.TLSConfig{}}
	b, err := os.ReadFile(d.secretFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s, err := auth.NewSecret()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(d.secretFile, []byte(s+"\n"), 0o600); err != nil {
			return nil, err
		}
		d.secret = []byte(s)
	case err != nil:
		return nil, err
	default:
		d.secret = []byte(strings.TrimSpace(string(b)))
	}
	if d.adminToken, err = auth.MintHS256(d.secret, auth.Grant{Role: auth.RoleAdmin, Namespaces: []string{auth.AllNamespaces}, TTL: devTokenTTL, Subject: "cairn-dev"}); err != nil {
		return nil, fmt.Errorf("%s: %w", d.secretFile, err)
	}

	if err := os.MkdirAll(d.tlsDir, 0o700); err != nil {
		return nil, err
	}
	caBase := filepath.Join(d.tlsDir, "ca")
	ca, err := tlsutil.LoadCAFiles(caBase+".crt", caBase+".key")
	if err != nil {
		if _, statErr := os.Stat(caBase + ".crt"); !errors.Is(statErr, fs.ErrNotExist) {
			return nil, err
		}
		if ca, err = tlsutil.NewCA("cairn dev CA", 10*365*24*time.Hour); err != nil {
			return nil, err
		}
		key, err := ca.KeyPEM()
		if err != nil {
			return nil, err
		}
		if err := tlsutil.WritePair(caBase, ca.CertPEM(), key); err != nil {
			return nil, err
		}
	}
	for _, id := range ids {
		cert, key, err := ca.Issue(id, []string{host, "127.0.0.1", "localhost"}, 365*24*time.Hour)
		if err != nil {
			return nil, err
		}
		base := filepath.Join(d.tlsDir, id)
		if err := tlsutil.WritePair(base, cert, key); err != nil {
			return nil, err
		}
		d.nodeTLS[id] = raftnode.TLSConfig{CAFile: caBase + ".crt", CertFile: base + ".crt", KeyFile: base + ".key"}
	}
	return d, nil
}

// authConfig is the nodes' token configuration.
func (d *devSecurity) authConfig() auth.Config {
	cfg := auth.DefaultConfig()
	cfg.HMACSecret = d.secret
	return cfg
}
