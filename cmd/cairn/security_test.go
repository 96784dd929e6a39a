package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mustRunCairn runs the binary to completion and returns its output,
// failing the test when it exits non-zero.
func mustRunCairn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := runCairn(t, dir, nil, args...)
	if err != nil {
		t.Fatalf("cairn %v: %v\n%s", args, err, out)
	}
	return out
}

// TestSecureCluster runs what the README's Security section tells
// operators to do: `cairn certs` makes a CA and two node certificates,
// `cairn token issue` mints tokens from a secret file, and two `cairn
// serve` processes form a cluster with mutual TLS between them and TLS on
// their client API, the second joining through the first. Then: calls
// need a token (401), a viewer cannot write (403), an admin's write
// through the follower is forwarded to the leader, SIGHUP reloads the
// keys, and a node told --insecure-no-auth says so in its log.
func TestSecureCluster(t *testing.T) {
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	mustRunCairn(t, dir, "certs", "ca", "--dir", pki)
	if out, err := runCairn(t, dir, nil, "certs", "ca", "--dir", pki); err == nil || !strings.Contains(out, "exists") {
		t.Errorf("a second `certs ca` did not refuse to overwrite: %v\n%s", err, out)
	}
	for _, n := range []string{"n1", "n2"} {
		mustRunCairn(t, dir, "certs", "node", "--ca-dir", pki, "--name", n, "--host", "127.0.0.1", "--host", "localhost")
	}
	secret := filepath.Join(dir, "auth-secret")
	if err := os.WriteFile(secret, []byte("an-e2e-secret-of-more-than-32-bytes-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := strings.TrimSpace(mustRunCairn(t, dir, "token", "issue", "--auth-secret-file", secret, "--role", "admin", "--namespaces", "*", "--ttl", "1h"))
	viewer := strings.TrimSpace(mustRunCairn(t, dir, "token", "issue", "--auth-secret-file", secret, "--role", "viewer", "--namespaces", "sec", "--ttl", "1h"))
	if strings.Count(admin, ".") != 2 || strings.Count(viewer, ".") != 2 {
		t.Fatalf("token issue printed %q and %q", admin, viewer)
	}

	ports := freePorts(t, 6)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	node := func(id string, raft, grpc, http int, extra ...string) *proc {
		args := append([]string{"serve", "--id", id, "--data-dir", filepath.Join(dir, id),
			"--raft-addr", addr(raft), "--grpc-addr", addr(grpc), "--http-addr", addr(http), "--log-level", "info",
			"--auth-secret-file", secret,
			"--cluster-ca", filepath.Join(pki, "ca.crt"), "--cluster-cert", filepath.Join(pki, id+".crt"), "--cluster-key", filepath.Join(pki, id+".key"),
			"--tls-cert", filepath.Join(pki, id+".crt"), "--tls-key", filepath.Join(pki, id+".key"), "--tls-ca", filepath.Join(pki, "ca.crt"),
		}, extra...)
		return startCairn(t, dir, args...)
	}
	n1 := node("n1", 0, 1, 2, "--bootstrap")
	n2 := node("n2", 3, 4, 5, "--join", addr(1))

	pem, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	call := func(method, url, token, body string) (int, string) {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []int{2, 5} {
		waitFor(t, 60*time.Second, "https://"+addr(p)+"/readyz", func() bool {
			code, _ := call(http.MethodGet, "https://"+addr(p)+"/readyz", "", "")
			return code == http.StatusOK
		})
	}
	n1URL, n2URL := "https://"+addr(2), "https://"+addr(5)
	waitFor(t, 30*time.Second, "n2 to be a member", func() bool {
		code, body := call(http.MethodGet, n1URL+"/v1/cluster", admin, "")
		return code == http.StatusOK && strings.Contains(body, `"n2"`)
	})

	if code, body := call(http.MethodGet, n2URL+"/v1/namespaces", "", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d %s", code, body)
	}
	if code, body := call(http.MethodPut, n2URL+"/v1/namespaces/sec", admin, "{}"); code != http.StatusOK {
		t.Fatalf("admin PUT namespace via n2: %d %s", code, body)
	}
	if code, body := call(http.MethodPut, n2URL+"/v1/namespaces/sec/objects/o/keys/k", viewer, `{"value": 1}`); code != http.StatusForbidden {
		t.Errorf("viewer PUT key: %d %s", code, body)
	}
	if code, body := call(http.MethodPut, n2URL+"/v1/namespaces/sec/objects/o/keys/k", admin, `{"value": 1}`); code != http.StatusOK {
		t.Errorf("admin PUT key via n2: %d %s", code, body)
	}
	if code, body := call(http.MethodGet, n1URL+"/v1/namespaces/sec/objects/o/keys/k", viewer, ""); code != http.StatusOK || !strings.Contains(body, `"value":1`) {
		t.Errorf("viewer GET key via n1: %d %s", code, body)
	}
	if code, _ := call(http.MethodGet, "http://"+addr(2)+"/healthz", "", ""); code == http.StatusOK {
		t.Error("the TLS REST port answered plain HTTP")
	}

	if err := n1.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n1 to log the reload", func() bool { return strings.Contains(n1.out.String(), "token keys reloaded") })
	for _, p := range []*proc{n1, n2} {
		if out := p.out.String(); strings.Contains(out, "authentication is OFF") || strings.Contains(out, "cluster TLS is off") {
			t.Errorf("a secured node warns of being insecure:\n%s", out)
		}
	}

	// A node without authentication says so.
	free := freePorts(t, 3)
	open := startCairn(t, dir, "serve", "--id", "x", "--data-dir", filepath.Join(dir, "x"), "--bootstrap", "--insecure-no-auth",
		"--raft-addr", fmt.Sprintf("127.0.0.1:%d", free[0]), "--grpc-addr", fmt.Sprintf("127.0.0.1:%d", free[1]), "--http-addr", fmt.Sprintf("127.0.0.1:%d", free[2]))
	waitFor(t, 30*time.Second, "the insecure node's warnings", func() bool {
		out := open.out.String()
		return strings.Contains(out, "authentication is OFF") && strings.Contains(out, "cluster TLS is off")
	})
	if !bytes.Contains([]byte(open.out.String()), []byte("level=WARN")) {
		t.Errorf("the warnings are not at level WARN:\n%s", open.out.String())
	}
}

// TestTokenIssueRefuses: no secret, a short secret, an unknown role.
func TestTokenIssueRefuses(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("too-short"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long")
	if err := os.WriteFile(long, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "admin"}, "no HMAC secret"},
		{[]string{"--role", "admin", "--auth-secret-file", short}, "at least 32"},
		{[]string{"--role", "root", "--auth-secret-file", long}, "--role"},
		{[]string{"--role", "viewer", "--auth-secret-file", long, "--ttl", "0s"}, "TTL"},
	} {
		out, err := runCairn(t, dir, nil, append([]string{"token", "issue"}, c.args...)...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("token issue %v: %v, output %q does not say %q", c.args, err, out, c.want)
		}
	}
}
