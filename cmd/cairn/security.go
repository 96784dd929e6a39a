package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cairndb/cairn/auth"
	"github.com/cairndb/cairn/raftnode"
	"github.com/cairndb/cairn/server"
	"github.com/cairndb/cairn/tlsutil"
	"github.com/spf13/pflag"
)

// securityFlags are the authentication and TLS flags of `cairn serve`.
type securityFlags struct {
	insecureNoAuth bool

	secret, secretFile                 string
	publicKeyFile, jwks                string
	issuer, audience                   string
	leeway, reloadEvery                time.Duration
	tlsCert, tlsKey, tlsCA             string
	clusterCA, clusterCert, clusterKey string
	joinToken                          string
}

func (f *securityFlags) register(fl *pflag.FlagSet) {
	fl.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "run without authentication: anyone who reaches the API may do anything (logged as a warning)")
	fl.StringVar(&f.secret, "auth-secret", "", "HMAC secret (32+ bytes) verifying HS256/384/512 tokens; prefer CAIRN_AUTH_SECRET or --auth-secret-file, as flags show in ps")
	fl.StringVar(&f.secretFile, "auth-secret-file", "", "file holding the HMAC secret")
	fl.StringVar(&f.publicKeyFile, "auth-public-key-file", "", "PEM file of public keys verifying RS256, ES256 and EdDSA tokens (re-read on SIGHUP)")
	fl.StringVar(&f.jwks, "auth-jwks-file", "", "JWKS file of public keys verifying RS256, ES256 and EdDSA tokens (re-read on SIGHUP)")
	fl.StringVar(&f.issuer, "auth-issuer", "", "required iss claim (default: not checked)")
	fl.StringVar(&f.audience, "auth-audience", "", "required aud claim (default: not checked)")
	fl.DurationVar(&f.leeway, "auth-leeway", auth.DefaultLeeway, "clock skew tolerated for exp, nbf and iat")
	fl.DurationVar(&f.reloadEvery, "auth-reload-interval", 0, "re-read the key files this often (default: only on SIGHUP)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "certificate (PEM) of the client API, gRPC and REST (default: plain text)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "key (PEM) of --tls-cert")
	fl.StringVar(&f.tlsCA, "tls-ca", "", "CA (PEM) of the other members' client API certificates, to --join through them (default: system roots and --cluster-ca)")
	fl.StringVar(&f.clusterCA, "cluster-ca", "", "cluster CA (PEM): Raft and forwarding between nodes use mutual TLS with certificates it signed")
	fl.StringVar(&f.clusterCert, "cluster-cert", "", "this node's certificate (PEM) signed by --cluster-ca, naming its Raft address")
	fl.StringVar(&f.clusterKey, "cluster-key", "", "key (PEM) of --cluster-cert")
	fl.StringVar(&f.joinToken, "join-token", "", "admin token for --join (default: minted from the HMAC secret when there is one)")
}

// security is what the flags resolve to.
type security struct {
	auth      auth.Config
	serverTLS server.TLSConfig
	raftTLS   raftnode.TLSConfig
	joinToken string
	joinTLS   *tls.Config
}

// resolve reads the files the flags name and checks that they make sense
// together; join says whether the node is to join a cluster.
func (f securityFlags) resolve(join bool) (security, error) {
	var sec security
	var errs []error
	secret, err := readSecret(f.secret, f.secretFile)
	if err != nil {
		errs = append(errs, err)
	}
	sec.auth = auth.Config{
		HMACSecret: secret, PublicKeyFile: f.publicKeyFile, JWKSFile: f.jwks,
		Issuer: f.issuer, Audience: f.audience, Leeway: f.leeway, ReloadInterval: f.reloadEvery,
	}
	switch {
	case !sec.auth.Enabled() && !f.insecureNoAuth && err == nil:
		errs = append(errs, errors.New("no authentication configured: give --auth-secret-file (or CAIRN_AUTH_SECRET), --auth-public-key-file or --auth-jwks-file; or --insecure-no-auth to let anyone who reaches the API do anything"))
	case sec.auth.Enabled() && f.insecureNoAuth:
		errs = append(errs, errors.New("--insecure-no-auth contradicts the --auth-* flags given"))
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	sec.serverTLS = server.TLSConfig{CertFile: f.tlsCert, KeyFile: f.tlsKey}
	sec.raftTLS = raftnode.TLSConfig{CAFile: f.clusterCA, CertFile: f.clusterCert, KeyFile: f.clusterKey}
	if sec.raftTLS.Enabled() && (f.clusterCA == "" || f.clusterCert == "" || f.clusterKey == "") {
		errs = append(errs, errors.New("--cluster-ca, --cluster-cert and --cluster-key go together"))
	}
	if join {
		sec.joinToken = f.joinToken
		if sec.joinToken == "" && len(secret) > 0 {
			tok, err := auth.MintHS256(secret, auth.Grant{Role: auth.RoleAdmin, TTL: 5 * time.Minute, Subject: "cairn-join", Issuer: f.issuer, Audience: f.audience})
			if err != nil {
				errs = append(errs, err)
			}
			sec.joinToken = tok
		}
		if f.tlsCA != "" || f.tlsCert != "" {
			pool, err := joinRoots(f.tlsCA, f.clusterCA)
			if err != nil {
				errs = append(errs, err)
			}
			sec.joinTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
	}
	return sec, errors.Join(errs...)
}

// joinRoots are the CAs a joining node trusts for the members' client
// API: tlsCA when given, else the system roots; plus the cluster CA.
func joinRoots(tlsCA, clusterCA string) (*x509.CertPool, error) {
	var pool *x509.CertPool
	var err error
	if tlsCA != "" {
		if pool, err = tlsutil.CertPool(tlsCA); err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
	} else if pool, err = x509.SystemCertPool(); err != nil {
		pool = x509.NewCertPool()
	}
	if clusterCA != "" {
		b, err := os.ReadFile(clusterCA)
		if err != nil {
			return nil, fmt.Errorf("--cluster-ca: %w", err)
		}
		pool.AppendCertsFromPEM(b)
	}
	return pool, nil
}

// readSecret returns the HMAC secret given as a value or in a file
// (surrounding white space removed), or nil when neither is.
func readSecret(value, file string) ([]byte, error) {
	switch {
	case value != "" && file != "":
		return nil, errors.New("give the HMAC secret as --auth-secret or --auth-secret-file, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--auth-secret-file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return nil, fmt.Errorf("--auth-secret-file: %s is empty", file)
		}
		return []byte(s), nil
	case value != "":
		return []byte(value), nil
	}
	return nil, nil
}

// warnInsecure logs what the configuration leaves open.
func warnInsecure(log *slog.Logger, sec security) {
	if !sec.auth.Enabled() {
		log.Warn("authentication is OFF (--insecure-no-auth): anyone who can reach the API can read, write and administer everything")
	}
	if !sec.raftTLS.Enabled() {
		log.Warn("cluster TLS is off: anyone who can reach the Raft port can read and change the state; give --cluster-ca, --cluster-cert and --cluster-key")
	}
}

// reloadKeysOnHUP re-reads the token keys of servers on every SIGHUP,
// until the returned stop is called.
func reloadKeysOnHUP(log *slog.Logger, servers ...*server.Server) (stop func()) {
	ch := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(ch, syscall.SIGHUP)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
				for _, s := range servers {
					if err := s.ReloadAuthKeys(); err != nil {
						log.Error("SIGHUP: reloading the token keys failed; the keys in use stay", "err", err)
					} else {
						log.Info("SIGHUP: token keys reloaded")
					}
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
