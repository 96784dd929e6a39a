package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	peerv1 "github.com/cairndb/cairn/api/cairn/peer/v1"
	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
	"github.com/cairndb/cairn/raftnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestForeignCertificateCannotJoin: a node whose certificate another CA
// signed asks to join with a valid admin token, and so does a node with
// no TLS at all: the leader refuses both (it checks the newcomer's
// certificate before it changes the configuration), the joins fail fast,
// and the cluster's members and state are as they were.
func TestForeignCertificateCannotJoin(t *testing.T) {
	pki := mustPKI(t, "cluster-ca")
	c := mustStartCluster(t, 3, secureOptions(t, pki, nil))
	leader := c.leader(t)
	before := c.mustStateHash(t)
	foreign := mustPKI(t, "foreign-ca")
	for name, tlsCfg := range map[string]raftnode.TLSConfig{
		"foreign": foreign.nodeTLS(t, "foreign"),
		"plain":   {},
	} {
		cfg := c.nodeConfig(name, filepath.Join(t.TempDir(), name))
		cfg.Raft.TLS = tlsCfg
		cfg.Join = []string{leader.Server.GRPCAddr()}
		start := time.Now()
		rn, err := StartNode(cfg)
		if err == nil {
			rn.Stop()
			t.Fatalf("%s: a node without the cluster's certificate joined", name)
		}
		if !strings.Contains(err.Error(), "mutual TLS") {
			t.Errorf("%s: join error %v does not say why", name, err)
		}
		if d := time.Since(start); d > waitLong/2 {
			t.Errorf("%s: the refused join took %s; it should fail at once", name, d)
		}
	}
	servers, err := leader.Node.Servers()
	if err != nil || len(servers) != 3 {
		t.Fatalf("members after the refused joins: %v, %v", servers, err)
	}
	if after := c.mustStateHash(t); !bytes.Equal(before, after) {
		t.Error("the refused joins changed the state")
	}
}

// TestForeignCertificateCannotDisturb starts, next to a cluster with
// mutual TLS, a node of another CA that believes it belongs to the
// cluster (its initial configuration lists the real members): it
// campaigns, and its vote requests are dropped at the handshake and
// logged. It cannot dial the leader's peer API either, not even when it
// skips checking the leader's certificate. A plain TCP connection
// speaking garbage to the Raft port is dropped and logged. Through it
// all the cluster keeps its leader and term, and serves writes.
func TestForeignCertificateCannotDisturb(t *testing.T) {
	pki := mustPKI(t, "cluster-ca")
	logs := map[string]*logSink{}
	c := mustStartCluster(t, 3, secureOptions(t, pki, logs))
	leader := c.leader(t)
	terms := map[string]uint64{}
	for _, n := range c.running() {
		terms[n.id] = n.Node.Status().Term
	}
	refused := func() int {
		total := 0
		for _, l := range logs {
			total += l.count("TLS handshake failed")
		}
		return total
	}
	base := refused()

	foreign := mustPKI(t, "foreign-ca")
	cfg := c.nodeConfig("intruder", filepath.Join(t.TempDir(), "intruder"))
	cfg.Raft.TLS = foreign.nodeTLS(t, "intruder")
	cfg.Raft.LogOutput, cfg.Raft.LogLevel = io.Discard, "error"
	intruder, err := StartNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stopIntruder := sync.OnceFunc(intruder.Stop)
	defer stopIntruder()
	initial := []raftnode.Server{{ID: "intruder", Address: intruder.Node.RaftAddr(), Voter: true}}
	for _, n := range c.running() {
		initial = append(initial, raftnode.Server{ID: n.id, Address: n.Node.RaftAddr(), Voter: true})
	}
	if err := intruder.Node.Bootstrap(initial); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitLong, "the members to drop the intruder's vote requests", func() bool { return refused() >= base+3 })
	if st := intruder.Node.Status(); st.LeaderID != "" || st.Term == 0 {
		t.Errorf("the intruder's view: %+v; want a campaigning node without a leader", st)
	}

	// The peer API: the intruder's own dialer, and a TLS client that
	// skips checking the leader's certificate.
	ctx := testCtx(t)
	if _, err := intruder.Node.DialPeer(ctx, leader.Node.RaftAddr()); err == nil {
		t.Error("the intruder dialed the leader's peer API")
	}
	cert, err := tls.LoadX509KeyPair(cfg.Raft.TLS.CertFile, cfg.Raft.TLS.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+leader.Node.RaftAddr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			_, err = c.Write([]byte{0xCB}) // the peer stream kind
			return c, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	shortCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = peerv1.NewPeerServiceClient(conn).Propose(shortCtx, &peerv1.ProposeRequest{Command: &raftcmdv1.Command{
		Op: &raftcmdv1.Command_PutNamespace{PutNamespace: &raftcmdv1.PutNamespace{Name: "evil"}},
	}})
	if err == nil {
		t.Error("a forged peer call with a foreign certificate was answered")
	}

	stopIntruder()

	// Garbage on the Raft port.
	raw, err := net.Dial("tcp", leader.Node.RaftAddr())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.Write([]byte("\x16\x03\x01\x00\x05hello, is this raft?\r\n\r\n"))
	_ = raw.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadAll(raw); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Error("the Raft port kept a garbage connection open")
		}
	}
	_ = raw.Close()
	waitFor(t, waitLong, "the garbage connection to be logged", func() bool {
		return logs[leader.id].count("remote="+raw.LocalAddr().String()) > 0
	})

	for _, n := range c.running() {
		if got := n.Node.Status().Term; got != terms[n.id] {
			t.Errorf("%s: term moved from %d to %d while the intruder campaigned", n.id, terms[n.id], got)
		}
	}
	if c.leader(t) != leader {
		t.Error("the leader changed")
	}
	admin := tokenFor(t, "admin", "*")
	if _, err := c.followers(t)[0].namespaces().PutNamespace(withToken(testCtx(t), admin), namespaceRequest("after")); err != nil {
		t.Fatalf("a write after the intrusion: %v", err)
	}
	resp, err := leader.namespaces().ListNamespaces(withToken(testCtx(t), admin), listNamespacesRequest())
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range resp.Namespaces {
		if ns.Name == "evil" {
			t.Error("the forged peer call wrote")
		}
	}
}

// TestClientAPITLS serves the client API over TLS: gRPC and REST answer
// clients that trust the CA, and refuse plain-text ones; the tokens are
// checked as over plain text.
func TestClientAPITLS(t *testing.T) {
	pki := mustPKI(t, "api-ca")
	cert, key := pki.mustIssue(t, "api")
	c := mustStartCluster(t, 1, clusterOptions{Configure: func(_ string, cfg *NodeConfig) {
		cfg.Server.Auth = testAuthConfig()
		cfg.Server.TLS = TLSConfig{CertFile: cert, KeyFile: key}
	}})
	n := c.leader(t)
	pem, err := os.ReadFile(pki.caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	admin := tokenFor(t, "admin", "*")

	conn, err := grpc.NewClient(n.Server.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := cairnv1.NewClusterServiceClient(conn).GetCluster(withToken(testCtx(t), admin), &cairnv1.GetClusterRequest{}); err != nil {
		t.Errorf("GetCluster over TLS: %v", err)
	}
	if _, err := cairnv1.NewClusterServiceClient(conn).GetCluster(testCtx(t), &cairnv1.GetClusterRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("GetCluster over TLS without a token: %v", err)
	}
	shortCtx, cancel := context.WithTimeout(testCtx(t), 3*time.Second)
	defer cancel()
	if _, err := cairnv1.NewClusterServiceClient(n.conn).GetCluster(withToken(shortCtx, admin), &cairnv1.GetClusterRequest{}); err == nil {
		t.Error("the TLS gRPC port answered a plain-text client")
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/v1/namespaces": http.StatusUnauthorized} {
		resp, err := client.Get("https://" + n.Server.HTTPAddr() + path)
		if err != nil {
			t.Fatalf("GET %s over TLS: %v", path, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s over TLS: %d, want %d", path, resp.StatusCode, want)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+n.Server.HTTPAddr()+"/v1/namespaces", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Errorf("GET /v1/namespaces over TLS with a token: %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + n.Server.HTTPAddr() + "/healthz"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the TLS REST port answered plain HTTP")
		}
	}
}

// TestHardenedLimits: an oversized REST header is refused with 431 and
// oversized gRPC metadata is refused; the HTTP server has its slow-client
// timeouts and no write timeout.
func TestHardenedLimits(t *testing.T) {
	c := mustStartCluster(t, 1, clusterOptions{})
	n := c.leader(t)
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.Server.HTTPAddr()+"/v1/namespaces", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 100<<10))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 100 KiB header: HTTP %d, want 431", resp.StatusCode)
	}
	ctx := metadataCtx(testCtx(t), "x-big", strings.Repeat("x", 100<<10))
	if _, err := n.namespaces().ListNamespaces(ctx, listNamespacesRequest()); err == nil {
		t.Error("100 KiB of gRPC metadata was accepted")
	}
	h := n.Server.http
	if h.ReadHeaderTimeout == 0 || h.ReadTimeout == 0 || h.IdleTimeout == 0 || h.WriteTimeout != 0 || h.MaxHeaderBytes != 64<<10 {
		t.Errorf("HTTP server limits: read header %s, read %s, idle %s, write %s, header bytes %d",
			h.ReadHeaderTimeout, h.ReadTimeout, h.IdleTimeout, h.WriteTimeout, h.MaxHeaderBytes)
	}
}
