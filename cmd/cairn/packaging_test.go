package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The packaging files (docker-compose.yml, the systemd unit and its
// configuration file, the Makefile's release target and the Dockerfile)
// pass flags, settings and link-time variables that nothing else checks.
// These tests hold them to the binary, so that they cannot rot silently.

// composeFile is the part of docker-compose.yml the tests read.
type composeFile struct {
	Services map[string]struct {
		Command         []string          `yaml:"command"`
		Environment     map[string]string `yaml:"environment"`
		Volumes         []string          `yaml:"volumes"`
		Ports           []string          `yaml:"ports"`
		StopGracePeriod string            `yaml:"stop_grace_period"`
		Networks        map[string]struct {
			IPv4 string `yaml:"ipv4_address"`
		} `yaml:"networks"`
	} `yaml:"services"`
}

// composeVar matches a ${NAME...} substitution of a compose value.
var composeVar = regexp.MustCompile(`\$\{([A-Z_]+)[^}]*\}`)

// TestDockerComposeCluster runs the three nodes of docker-compose.yml as
// real processes, with the flags and environment the file gives them: the
// containers' addresses become loopback addresses (172.28.0.1x:port is
// 127.0.0.1x:port, and 0.0.0.0 binds the node's own one) and the volumes
// temporary directories, with certificates made by `cairn certs` as the
// file's header says (the CA's key outside the directory the nodes mount). Every node must become ready, and a write through a
// follower (forwarded to the leader over the cluster's mutual TLS) must
// succeed; every CAIRN_* variable the file sets must name a serve flag,
// and the grace period must outlast the drain.
func TestDockerComposeCluster(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(cf.Services) != 3 {
		t.Fatalf("docker-compose.yml has %d services, want 3", len(cf.Services))
	}
	root := t.TempDir()
	ca, pki := filepath.Join(root, "ca"), filepath.Join(root, "pki")
	if out, err := runCairn(t, root, nil, "certs", "ca", "--dir", ca); err != nil {
		t.Fatalf("cairn certs ca: %v\n%s", err, out)
	}
	if err := os.MkdirAll(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	caCert, err := os.ReadFile(filepath.Join(ca, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pki, "ca.crt"), caCert, 0o644); err != nil {
		t.Fatal(err)
	}
	secret := base64.StdEncoding.EncodeToString([]byte("compose-test-secret-0123456789-abcdef"))
	serve := newServeCmd().Flags()
	loopback := func(s string) string { return strings.ReplaceAll(s, "172.28.0.", "127.0.0.") }

	type node struct {
		name, httpAddr string
		p              *proc
	}
	var nodes []*node
	for name, svc := range cf.Services {
		if grace, err := time.ParseDuration(svc.StopGracePeriod); err != nil || grace < drainTimeout+10*time.Second {
			t.Errorf("%s: stop_grace_period %q does not outlast the %s drain", name, svc.StopGracePeriod, drainTimeout)
		}
		ip := loopback(svc.Networks["cairn"].IPv4)
		if ip == "" {
			t.Fatalf("%s has no fixed address on network cairn", name)
		}
		if out, err := runCairn(t, root, nil, "certs", "node", "--ca-dir", ca, "--dir", pki, "--name", name, "--host", ip, "--host", name); err != nil {
			t.Fatalf("cairn certs node %s: %v\n%s", name, err, out)
		}
		mounts := map[string]string{}
		for _, v := range svc.Volumes {
			parts := strings.Split(v, ":")
			switch {
			case parts[0] == "./pki":
				mounts[parts[1]] = pki
			default:
				mounts[parts[1]] = filepath.Join(root, name, parts[0])
			}
		}
		var env []string
		for k, v := range svc.Environment {
			flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "CAIRN_")), "_", "-")
			if !strings.HasPrefix(k, "CAIRN_") || serve.Lookup(flag) == nil {
				t.Errorf("%s: environment %s names no flag of cairn serve", name, k)
			}
			v = composeVar.ReplaceAllStringFunc(v, func(m string) string {
				if composeVar.FindStringSubmatch(m)[1] != "CAIRN_AUTH_SECRET" {
					t.Fatalf("%s: %s uses %s, which this test does not know", name, k, m)
				}
				return secret
			})
			env = append(env, k+"="+v)
		}
		if len(svc.Command) == 0 || svc.Command[0] != "serve" {
			t.Fatalf("%s: command %v does not run cairn serve", name, svc.Command)
		}
		args := []string{"serve"}
		for _, a := range svc.Command[1:] {
			a = strings.ReplaceAll(loopback(a), "0.0.0.0:", ip+":")
			for inContainer, onHost := range mounts {
				if a == inContainer || strings.HasPrefix(a, inContainer+"/") {
					a = onHost + strings.TrimPrefix(a, inContainer)
				}
			}
			args = append(args, a)
		}
		n := &node{name: name, httpAddr: ip + ":7300"}
		for i, a := range args {
			if a == "--http-addr" && i+1 < len(args) {
				n.httpAddr = args[i+1]
			}
		}
		n.p = startCairnEnv(t, root, env, args...)
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		waitForDetail(t, 60*time.Second, n.name+" to be ready", func() (bool, string) {
			select {
			case <-n.p.done:
				t.Fatalf("%s exited:\n%s", n.name, n.p.out.String())
			default:
			}
			status, body, err := rest(http.MethodGet, "http://"+n.httpAddr+"/readyz", nil)
			return err == nil && status == http.StatusOK, fmt.Sprintf("%d %s %v", status, body, err)
		})
	}
	token, err := runCairn(t, root, nil, "token", "issue", "--auth-secret", secret, "--role", "admin", "--namespaces", "*", "--ttl", "10m")
	if err != nil {
		t.Fatalf("cairn token issue: %v\n%s", err, token)
	}
	for _, n := range nodes {
		e2eTokens.Store(n.httpAddr, strings.TrimSpace(token))
		defer e2eTokens.Delete(n.httpAddr)
	}
	for _, n := range nodes { // at least two of them are followers and forward
		status, body, err := rest(http.MethodPut, "http://"+n.httpAddr+"/v1/namespaces/compose-"+n.name, map[string]any{})
		if err != nil || status != http.StatusOK {
			t.Fatalf("PUT a namespace through %s: %d %s %v", n.name, status, body, err)
		}
	}
}

// unitDirectives returns the directives of a systemd unit file, by name,
// continuation lines joined.
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	line := ""
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if line == "" && (l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[")) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			line += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		line += l
		k, v, _ := strings.Cut(line, "=")
		out[k] = append(out[k], v)
		line = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSystemdUnit checks contrib/systemd/cairn.service against the binary:
// its ExecStart runs `cairn serve` with flags that exist, the
// configuration file it names (contrib/systemd/cairn.conf) holds only
// settings that cairn serve accepts with values that parse, the data
// directory lies in the unit's StateDirectory, and TimeoutStopSec
// outlasts the drain; and the unit keeps the hardening it promises.
func TestSystemdUnit(t *testing.T) {
	dir := filepath.Join("..", "..", "contrib", "systemd")
	d := unitDirectives(t, filepath.Join(dir, "cairn.service"))
	exec := strings.Fields(strings.Join(d["ExecStart"], " "))
	if len(exec) < 2 || filepath.Base(exec[0]) != "cairn" || exec[1] != "serve" {
		t.Fatalf("ExecStart %v does not run cairn serve", exec)
	}
	cmd := newServeCmd()
	fs := cmd.Flags()
	if err := fs.Parse(exec[2:]); err != nil {
		t.Fatalf("ExecStart flags: %v", err)
	}
	conf := fs.Lookup("config").Value.String()
	if filepath.Base(conf) != "cairn.conf" {
		t.Fatalf("ExecStart reads --config %q; the example shipped is cairn.conf", conf)
	}
	if err := bindConfigFile(fs, filepath.Join(dir, "cairn.conf")); err != nil {
		t.Fatalf("contrib/systemd/cairn.conf: %v", err)
	}
	for _, required := range []string{"id", "data-dir", "raft-addr", "initial-cluster", "auth-secret-file"} {
		if !fs.Lookup(required).Changed {
			t.Errorf("contrib/systemd/cairn.conf does not set %s", required)
		}
	}
	if _, err := parseInitialCluster(fs.Lookup("initial-cluster").Value.String()); err != nil {
		t.Errorf("contrib/systemd/cairn.conf: %v", err)
	}
	state := "/var/lib/" + strings.Join(d["StateDirectory"], "")
	if dataDir := fs.Lookup("data-dir").Value.String(); dataDir != state && !strings.HasPrefix(dataDir, state+"/") {
		t.Errorf("data-dir %s is outside StateDirectory %s, which is the only place the unit may write", dataDir, state)
	}
	if stop, err := time.ParseDuration(strings.Join(d["TimeoutStopSec"], "")); err != nil || stop < drainTimeout+10*time.Second {
		t.Errorf("TimeoutStopSec %v does not outlast the %s drain", d["TimeoutStopSec"], drainTimeout)
	}
	for k, want := range map[string]string{
		"User": "cairn", "Restart": "on-failure", "LimitNOFILE": "65536", "KillSignal": "SIGTERM",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
	} {
		if got := strings.Join(d[k], ""); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
}

// TestReleaseLinkFlags builds the binary with the -X flags of the
// Makefile's release target (and checks the Dockerfile sets the same
// variables): `cairn version` must print the version and commit given,
// which fails if a variable is renamed, since -X ignores names that do
// not exist.
func TestReleaseLinkFlags(t *testing.T) {
	ldflags := regexp.MustCompile(`-X main\.(\w+)=`)
	names := func(file string) []string {
		b, err := os.ReadFile(filepath.Join("..", "..", file))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ldflags.FindAllStringSubmatch(string(b), -1) {
			out = append(out, m[1])
		}
		return out
	}
	mk, docker := names("Makefile"), names("Dockerfile")
	if strings.Join(mk, ",") != "version,commit" || strings.Join(docker, ",") != "version,commit" {
		t.Fatalf("the Makefile sets main.%v and the Dockerfile main.%v; both must set version and commit", mk, docker)
	}
	bin := filepath.Join(t.TempDir(), "cairn")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-test -X main.commit=0123abcd", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "cairn v9.8.7-test (commit 0123abcd, ") {
		t.Fatalf("cairn version of a release build: %v\n%s", err, out)
	}
}
