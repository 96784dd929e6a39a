package raftnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/cairndb/cairn/tlsutil"
	"github.com/hashicorp/go-hclog"
)

// Tests of the Raft port: the stream kinds, mutual TLS, and what happens
// to connections that are neither.

// lockedLog collects a node's log lines.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// transportNode is a one-node cluster for the transport tests.
type transportNode struct {
	node *Node
	fsm  *fsm.FSM
	log  *lockedLog
}

// mustStartTransportNode starts a node with tlsCfg (zero: plain TCP),
// bootstrapped as a one-node cluster when bootstrap is set, logging
// warnings to its log.
func mustStartTransportNode(t *testing.T, id string, tlsCfg TLSConfig, bootstrap bool) *transportNode {
	t.Helper()
	dir := t.TempDir()
	f, err := fsm.Open(fsm.Options{Dir: filepath.Join(dir, "fsm"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	log := &lockedLog{}
	n, err := New(Config{
		ID: id, Dir: filepath.Join(dir, "raft"), BindAddr: "127.0.0.1:0", TLS: tlsCfg,
		HeartbeatTimeout: 500 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond, LeaderLeaseTimeout: 250 * time.Millisecond,
		NoSync: true, LogOutput: log, LogLevel: "warn",
	}, f)
	if err != nil {
		_ = f.Close()
		t.Fatalf("New(%s): %v", id, err)
	}
	tn := &transportNode{node: n, fsm: f, log: log}
	t.Cleanup(func() {
		_ = n.Shutdown()
		_ = f.Close()
	})
	if bootstrap {
		if err := n.Bootstrap([]Server{{ID: id, Address: n.RaftAddr(), Voter: true}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, waitLong, id+" to lead", n.IsLeader)
	}
	return tn
}

// mustWrite applies a namespace write through the node.
func (tn *transportNode) mustWrite(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := tn.node.Apply(ctx, &raftcmdv1.Command{Op: &raftcmdv1.Command_PutNamespace{PutNamespace: &raftcmdv1.PutNamespace{Name: ns}}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// waitLogged polls until the node's log holds want.
func (tn *transportNode) waitLogged(t *testing.T, want string) {
	t.Helper()
	waitFor(t, waitLong, "the log to mention "+want, func() bool { return strings.Contains(tn.log.String(), want) })
}

// mustBeDropped checks that the Raft port closes conn: a read ends
// (EOF or reset) well before its deadline.
func mustBeDropped(t *testing.T, conn net.Conn, what string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(handshakeTimeout + 5*time.Second))
	_, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("%s: the connection was not closed", what)
	}
}

// mustPKI writes a CA to dir and returns a function issuing node TLS
// configurations of it.
func mustTransportPKI(t *testing.T, name string) func(node string) TLSConfig {
	t.Helper()
	dir := t.TempDir()
	ca, err := tlsutil.NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.WritePair(filepath.Join(dir, "ca"), ca.CertPEM(), key); err != nil {
		t.Fatal(err)
	}
	return func(node string) TLSConfig {
		cert, key, err := ca.Issue(node, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Join(dir, node)
		if err := tlsutil.WritePair(base, cert, key); err != nil {
			t.Fatal(err)
		}
		return TLSConfig{CAFile: filepath.Join(dir, "ca.crt"), CertFile: base + ".crt", KeyFile: base + ".key"}
	}
}

// TestRaftPortDropsGarbage: on a plain Raft port, a connection speaking
// HTTP, one sending an unknown stream kind, and one that says nothing are
// closed and logged; the node keeps serving writes.
func TestRaftPortDropsGarbage(t *testing.T) {
	tn := mustStartTransportNode(t, "g1", TLSConfig{}, true)
	tn.mustWrite(t, "before")
	addr := tn.node.RaftAddr()

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	mustBeDropped(t, conn, "HTTP request")
	tn.waitLogged(t, "unknown stream kind 0x47")

	conn, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte{0x00, 0xff, 0x13, 0x37})
	mustBeDropped(t, conn, "binary garbage")
	tn.waitLogged(t, "unknown stream kind 0x00")

	// A Raft stream of garbage reaches Raft's decoder, which drops it.
	conn, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write(append([]byte{streamRaft}, bytes.Repeat([]byte{0xc1}, 64)...))
	mustBeDropped(t, conn, "garbage Raft stream")

	tn.mustWrite(t, "after")
	if tn.fsm.AppliedIndex() == 0 || !tn.node.IsLeader() {
		t.Fatal("the node stopped serving")
	}
}

// TestRaftPortTLS: with mutual TLS, a plain connection, one presenting no
// certificate and one presenting a certificate of another CA are all
// dropped at the handshake and logged; a member of the cluster CA reaches
// the peer API; VerifyPeer tells a member from an impostor.
func TestRaftPortTLS(t *testing.T) {
	issue := mustTransportPKI(t, "cluster")
	foreign := mustTransportPKI(t, "foreign")
	tn := mustStartTransportNode(t, "t1", issue("t1"), true)
	member := mustStartTransportNode(t, "t2", issue("t2"), false)
	impostor := mustStartTransportNode(t, "t3", foreign("t3"), false)
	addr := tn.node.RaftAddr()

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte{streamRaft, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	mustBeDropped(t, conn, "plain connection")
	tn.waitLogged(t, "TLS handshake failed")

	for _, cfg := range []*tls.Config{
		{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, // no client certificate
		foreignClient(t, foreign("intruder")),
	} {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			continue // refused during the handshake: what we want
		}
		_, _ = c.Write([]byte{streamPeer})
		mustBeDropped(t, c, "foreign TLS client")
	}
	waitFor(t, waitLong, "three failed handshakes logged", func() bool { return strings.Count(tn.log.String(), "TLS handshake failed") >= 3 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := member.node.VerifyPeer(ctx, addr); err != nil {
		t.Errorf("VerifyPeer of a member: %v", err)
	}
	if err := tn.node.VerifyPeer(ctx, impostor.node.RaftAddr()); err == nil {
		t.Error("VerifyPeer accepted a process with a certificate of another CA")
	}
	if _, err := impostor.node.DialPeer(ctx, addr); err == nil {
		t.Error("a process with a certificate of another CA dialed the peer API")
	}

	// A member's peer stream arrives on the peer listener, intact.
	go func() {
		c, err := member.node.DialPeer(ctx, addr)
		if err == nil {
			_, _ = c.Write([]byte("hello"))
			_ = c.Close()
		}
	}()
	c, err := tn.node.PeerListener().Accept()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	if string(got) != "hello" {
		t.Errorf("peer stream carried %q", got)
	}
	tn.mustWrite(t, "still-serving")
}

// foreignClient is a TLS client presenting cfg's certificate and not
// checking the server's (so that only the server's check is tested).
func foreignClient(t *testing.T, cfg TLSConfig) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
}

// TestTLSConfigValidate: a half-configured TLS is refused.
func TestTLSConfigValidate(t *testing.T) {
	cfg := Config{ID: "x", Dir: "d", BindAddr: "127.0.0.1:0", TLS: TLSConfig{CAFile: "ca.crt"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("Validate = %v, want the TLS error", err)
	}
}

// TestDialFromListenIP: a node whose Raft port listens on one loopback IP
// dials its peers from that IP (so a peer, or a proxy in front of it,
// sees who is calling), and from any IP when it listens on all of them.
func TestDialFromListenIP(t *testing.T) {
	peer, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for _, tc := range []struct{ bind, wantIP string }{
		{"127.0.0.2:0", "127.0.0.2"},
		{"127.0.0.4:0", "127.0.0.4"},
	} {
		m, err := newMux(tc.bind, nil, nil, nil, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		conn, err := m.dial(context.Background(), peer.Addr().String(), streamProbe)
		if err != nil {
			t.Fatal(err)
		}
		in, err := peer.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := in.RemoteAddr().(*net.TCPAddr).IP.String(); got != tc.wantIP {
			t.Errorf("listening on %s: peer sees a connection from %s, want %s", tc.bind, got, tc.wantIP)
		}
		_ = in.Close()
		_ = conn.Close()
		_ = m.Close()
	}
	m, err := newMux("0.0.0.0:0", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 5), Port: 1}, nil, nil, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if a := m.sourceAddr(peer.Addr().String()); a != nil {
		t.Errorf("listening on all interfaces: dials from %v, want any", a)
	}
	lo, err := newMux("127.0.0.2:0", nil, nil, nil, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	if a := lo.sourceAddr("192.0.2.1:7500"); a != nil {
		t.Errorf("listening on loopback, dialing 192.0.2.1: dials from %v, want any", a)
	}
}
