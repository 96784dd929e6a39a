package raftnode

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/cairndb/cairn/tlsutil"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The Raft port carries two kinds of streams: hashicorp/raft's RPCs and
// the server's peer API (the gRPC calls followers make of the leader).
// A dialer opens a TCP connection, completes a mutual TLS handshake when
// the cluster has TLS, then writes one byte naming the kind of stream.
// Anything else, a handshake that fails, a certificate the cluster CA did
// not sign, a missing or unknown kind byte, is logged and closed before
// Raft or the peer API sees a byte of it.
//
// A third kind, probe, only proves the dialer's and the listener's
// certificates to each other (VerifyPeer) and is closed at once.
const (
	streamRaft  byte = 0xCA
	streamPeer  byte = 0xCB
	streamProbe byte = 0xCC
)

const (
	// handshakeTimeout bounds the TLS handshake and the kind byte of an
	// incoming connection, so a silent client cannot hold a slot.
	handshakeTimeout = 10 * time.Second
	// maxPendingConns bounds the connections in that phase; beyond it new
	// connections are closed at once.
	maxPendingConns = 128
)

// mux accepts connections on the Raft port and sorts them into the Raft
// transport's listener and the peer API's listener. Safe for concurrent
// use.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	tls       *tlsutil.Mutual // nil: plain TCP
	tlsServer *tls.Config
	dialer    func(context.Context, string, string) (net.Conn, error) // nil: net.Dialer
	log       hclog.Logger

	raft, peer *connListener
	pending    chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
}

// newMux listens on bind. advertise, when not nil, is the address
// published to peers; otherwise the bound one, which must then be
// dialable (not an unspecified IP).
func newMux(bind string, advertise net.Addr, mutual *tlsutil.Mutual, dial func(context.Context, string, string) (net.Conn, error), log hclog.Logger) (*mux, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	m := &mux{
		ln: ln, advertise: advertise, tls: mutual, dialer: dial, log: log,
		pending: make(chan struct{}, maxPendingConns), done: make(chan struct{}),
	}
	if mutual != nil {
		m.tlsServer = mutual.ServerConfig()
	}
	addr, ok := m.addr().(*net.TCPAddr)
	if !ok || addr.IP == nil || addr.IP.IsUnspecified() {
		_ = ln.Close()
		return nil, fmt.Errorf("local bind address %s is not advertisable; set AdvertiseAddr", m.addr())
	}
	m.raft = &connListener{m: m, ch: make(chan net.Conn), closed: make(chan struct{})}
	m.peer = &connListener{m: m, ch: make(chan net.Conn), closed: make(chan struct{})}
	go m.acceptLoop()
	return m, nil
}

func (m *mux) addr() net.Addr {
	if m.advertise != nil {
		return m.advertise
	}
	return m.ln.Addr()
}

func (m *mux) acceptLoop() {
	delay := time.Duration(0)
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Error("accept failed", "error", err)
			t := time.NewTimer(delay)
			select {
			case <-m.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		delay = 0
		select {
		case m.pending <- struct{}{}:
			go m.sort(conn)
		default:
			m.log.Warn("dropped connection: too many connections in their handshake", "remote", conn.RemoteAddr().String())
			_ = conn.Close()
		}
	}
}

// sort completes conn's handshake and kind byte and hands it to its
// listener, or logs why not and closes it.
func (m *mux) sort(conn net.Conn) {
	defer func() { <-m.pending }()
	remote := conn.RemoteAddr().String()
	drop := func(why string, err error) {
		m.log.Warn("dropped connection: "+why, "remote", remote, "error", err)
		_ = conn.Close()
	}
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	c := conn
	if m.tlsServer != nil {
		tc := tls.Server(conn, m.tlsServer)
		if err := tc.Handshake(); err != nil {
			drop("TLS handshake failed (a peer needs a certificate signed by the cluster CA)", err)
			return
		}
		c = tc
	}
	var kind [1]byte
	if _, err := io.ReadFull(c, kind[:]); err != nil {
		drop("no stream kind", err)
		return
	}
	var l *connListener
	switch kind[0] {
	case streamRaft:
		l = m.raft
	case streamPeer:
		l = m.peer
	case streamProbe:
		_ = c.Close()
		return
	default:
		drop(fmt.Sprintf("unknown stream kind 0x%02x", kind[0]), nil)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	select {
	case l.ch <- c:
	case <-l.closed:
		_ = c.Close()
	case <-m.done:
		_ = c.Close()
	}
}

// dial connects to the Raft port at addr for a stream of kind, through
// the cluster's mutual TLS when it has TLS: the remote must present a
// certificate the cluster CA signed, valid for addr's host.
func (m *mux) dial(ctx context.Context, addr string, kind byte) (net.Conn, error) {
	dial := m.dialer
	if dial == nil {
		d := net.Dialer{LocalAddr: m.sourceAddr(addr)}
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := conn
	if m.tls != nil {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		tc := tls.Client(conn, m.tls.ClientConfig(host))
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(deadline)
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return c, nil
}

// sourceAddr is the local address to dial addr from: the IP the Raft port
// listens on, so that on a multi-homed host peers see connections come
// from the address they know the node by (and a proxy or firewall in front
// of a peer can tell nodes apart), rather than from whatever IP the
// routing table picks. nil (any) when the port listens on all interfaces,
// or on loopback while addr is not a loopback IP, which a loopback source
// cannot reach.
func (m *mux) sourceAddr(addr string) net.Addr {
	local, ok := m.ln.Addr().(*net.TCPAddr)
	if !ok || local.IP == nil || local.IP.IsUnspecified() {
		return nil
	}
	if local.IP.IsLoopback() {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return nil
		}
	}
	return &net.TCPAddr{IP: local.IP}
}

// Close stops accepting on the Raft port and ends both listeners.
func (m *mux) Close() error {
	m.closeOnce.Do(func() {
		close(m.done)
		_ = m.ln.Close()
	})
	return nil
}

// connListener is a net.Listener of the connections of one kind.
type connListener struct {
	m         *mux
	ch        chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

// Accept waits for the next connection of this kind.
func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.m.done:
		return nil, net.ErrClosed
	}
}

// Close stops handing out connections of this kind; the port stays open
// for the other kind.
func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr returns the advertised address of the Raft port.
func (l *connListener) Addr() net.Addr { return l.m.addr() }

// raftStream is the raft.StreamLayer over the mux: Raft's listener, and
// its dialer of Raft streams. Closing it (the transport does on shutdown)
// closes the whole mux. The connections it accepts answer only once the
// log is synced (durable.go).
type raftStream struct {
	*connListener
	synced func() error
}

var _ raft.StreamLayer = raftStream{}

// Accept waits for the next Raft connection.
func (s raftStream) Accept() (net.Conn, error) {
	c, err := s.connListener.Accept()
	if err != nil {
		return nil, err
	}
	return syncedConn{Conn: c, synced: s.synced}, nil
}

// Dial opens a Raft stream to address.
func (s raftStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.m.dial(ctx, string(address), streamRaft)
}

// Close closes the mux: the Raft port and both listeners.
func (s raftStream) Close() error {
	_ = s.connListener.Close()
	return s.m.Close()
}

// PeerListener returns the listener of peer API connections that arrive
// on the Raft port; with TLS, only from peers whose certificate the
// cluster CA signed. The server serves its peer API on it. Closing it
// refuses further peer connections; Raft is not affected.
func (n *Node) PeerListener() net.Listener { return n.mux.peer }

// DialPeer connects to the peer API of the member whose Raft address is
// addr, through the same mutual TLS as Raft.
func (n *Node) DialPeer(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := n.mux.dial(ctx, addr, streamPeer)
	if err != nil {
		return nil, fmt.Errorf("raftnode: dial peer %s: %w", addr, err)
	}
	return conn, nil
}

// VerifyPeer checks, when the cluster has TLS, that the process at Raft
// address addr presents a certificate the cluster CA signed, valid for
// addr's host. Without TLS there is nothing to check and it returns nil.
// The leader calls it before it admits a member, so that a process
// without the cluster's certificate is refused rather than added as a
// voter that can never take part.
func (n *Node) VerifyPeer(ctx context.Context, addr string) error {
	if n.mux.tls == nil {
		return nil
	}
	conn, err := n.mux.dial(ctx, addr, streamProbe)
	if err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	return conn.Close()
}
