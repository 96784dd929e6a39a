package tlsutil

import (
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// mustNode issues a node certificate of ca for 127.0.0.1 into dir and
// returns the Mutual of it (with caDir's CA as the cluster CA).
func mustNode(t *testing.T, ca *CA, caFile, dir, name string) *Mutual {
	t.Helper()
	cert, key, err := ca.Issue(name, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, name)
	if err := WritePair(base, cert, key); err != nil {
		t.Fatal(err)
	}
	m, err := LoadMutual(caFile, base+".crt", base+".key")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustCA(t *testing.T, dir, name string) (*CA, string) {
	t.Helper()
	ca, err := NewCA(name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, name)
	if err := WritePair(base, ca.CertPEM(), key); err != nil {
		t.Fatal(err)
	}
	again, err := LoadCAFiles(base+".crt", base+".key")
	if err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("LoadCAFiles: %v", err)
	}
	return ca, base + ".crt"
}

// handshake runs a TLS handshake between server and client over loopback
// TCP and returns the client's and the server's errors.
func handshake(server, client *tls.Config) (clientErr, serverErr error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err, err
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		s := tls.Server(conn, server)
		err = s.Handshake()
		if err == nil {
			// TLS 1.3: the server learns of a refused client certificate
			// only on its first read.
			_, err = s.Read(make([]byte, 1))
		}
		_ = conn.Close()
		done <- err
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return err, <-done
	}
	c := tls.Client(conn, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		_, clientErr = c.Write([]byte{1})
	}
	_ = conn.Close()
	return clientErr, <-done
}

// TestMutualTLS: two nodes of one CA complete a mutual handshake; a node
// of another CA is refused by both sides, and LoadMutual refuses to pair
// a node certificate with a CA that did not sign it.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caFile := mustCA(t, dir, "cluster")
	other, otherFile := mustCA(t, dir, "other")
	n1 := mustNode(t, ca, caFile, dir, "n1")
	n2 := mustNode(t, ca, caFile, dir, "n2")
	intruder := mustNode(t, other, otherFile, dir, "intruder")

	if cerr, serr := handshake(n1.ServerConfig(), n2.ClientConfig("127.0.0.1")); cerr != nil || serr != nil {
		t.Fatalf("members: client %v, server %v", cerr, serr)
	}
	if _, serr := handshake(n1.ServerConfig(), intruder.ClientConfig("127.0.0.1")); serr == nil {
		t.Error("the server accepted a client certificate of another CA")
	}
	if cerr, _ := handshake(intruder.ServerConfig(), n1.ClientConfig("127.0.0.1")); cerr == nil {
		t.Error("the client accepted a server certificate of another CA")
	}
	if cerr, _ := handshake(n1.ServerConfig(), n2.ClientConfig("10.9.9.9")); cerr == nil {
		t.Error("the client accepted a certificate not valid for the address it dialed")
	}
	if _, err := LoadMutual(caFile, filepath.Join(dir, "intruder.crt"), filepath.Join(dir, "intruder.key")); err == nil {
		t.Error("LoadMutual paired a certificate with a CA that did not sign it")
	}
	if _, err := LoadCAFiles(filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key")); !errors.Is(err, ErrNotCA) {
		t.Errorf("LoadCAFiles of a node certificate: %v", err)
	}
	if _, err := ServerTLS(filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"), "h2"); err != nil {
		t.Errorf("ServerTLS: %v", err)
	}
}
