package chaos

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// The network between the nodes, and between the clients and the nodes,
// is a set of TCP proxies. Every node listens on its own loopback IP and
// dials its peers from it (raftnode binds its source address to the IP its
// Raft port listens on), so the proxy in front of a node knows which node
// each connection comes from and can apply faults per directed link.
//
// The faults are those of a real network, seen through TCP:
//   - a partition between two nodes closes their connections and refuses
//     new ones (accepted, then closed at once);
//   - loss from one node to another stalls that direction: bytes are held,
//     as TCP holds them while its segments are lost, until the link heals
//     or a side gives up and closes; nothing is ever dropped mid-stream,
//     which would corrupt framing rather than imitate a network;
//   - latency delays every chunk by the sum of both ends' added latency,
//     in order.

// clientSide names the clients as the source of client-link connections.
const clientSide = "client"

// link is a directed pair of endpoints (node ids, or clientSide).
type link struct{ from, to string }

// Network holds the fault state of every link. Safe for concurrent use.
type Network struct {
	mu      sync.Mutex
	byIP    map[string]string // source IP -> node id
	cut     map[link]bool     // partitioned (both directions are set)
	lost    map[link]bool     // one-way loss: from's bytes to to are held
	latency map[string]time.Duration
	changed chan struct{} // closed and replaced on every change
	conns   map[*pipe]struct{}
}

// NewNetwork returns a network without faults.
func NewNetwork() *Network {
	return &Network{
		byIP: map[string]string{}, cut: map[link]bool{}, lost: map[link]bool{},
		latency: map[string]time.Duration{}, changed: make(chan struct{}), conns: map[*pipe]struct{}{},
	}
}

// register names the node whose connections come from ip.
func (n *Network) register(ip, id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.byIP[ip] = id
}

func (n *Network) nodeOf(ip string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if id, ok := n.byIP[ip]; ok {
		return id
	}
	return "unknown:" + ip
}

// notify wakes every pipe waiting on a change. Callers hold n.mu.
func (n *Network) notify() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// Partition cuts a and b apart in both directions: their connections
// close and new ones are refused until Heal.
func (n *Network) Partition(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[link{a, b}], n.cut[link{b, a}] = true, true
	for p := range n.conns {
		if (p.src == a && p.dst == b) || (p.src == b && p.dst == a) {
			p.close()
		}
	}
	n.notify()
}

// Lose holds every byte from sends to until Heal (one-way loss).
func (n *Network) Lose(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lost[link{from, to}] = true
	n.notify()
}

// Delay adds d to every link of node.
func (n *Network) Delay(node string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.latency[node] = d
	n.notify()
}

// Heal removes every fault.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut, n.lost, n.latency = map[link]bool{}, map[link]bool{}, map[string]time.Duration{}
	n.notify()
}

func (n *Network) isCut(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[link{from, to}]
}

// state returns whether from's bytes to to are held, their added latency,
// and a channel closed on the next change.
func (n *Network) state(from, to string) (held bool, delay time.Duration, changed <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lost[link{from, to}] || n.cut[link{from, to}], n.latency[from] + n.latency[to], n.changed
}

func (n *Network) track(p *pipe) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut[link{p.src, p.dst}] {
		return false
	}
	n.conns[p] = struct{}{}
	return true
}

func (n *Network) untrack(p *pipe) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, p)
}

// Proxy forwards the connections it accepts to target, applying the
// network's faults to the link from the connection's source to dst.
type Proxy struct {
	net    *Network
	ln     net.Listener
	target string
	dst    string
	// source names the endpoint a connection comes from.
	source func(net.Conn) string
	wg     sync.WaitGroup
}

// NewProxy listens on listen and forwards to target, which is node dst.
// Connections come from the node whose IP they come from (peers), or from
// clientSide when clients is set.
func NewProxy(nw *Network, listen, target, dst string, clients bool) (*Proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{net: nw, ln: ln, target: target, dst: dst}
	p.source = func(c net.Conn) string {
		if clients {
			return clientSide
		}
		return nw.nodeOf(c.RemoteAddr().(*net.TCPAddr).IP.String())
	}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting and closes every connection through the proxy.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.net.mu.Lock()
	for c := range p.net.conns {
		if c.proxy == p {
			c.close()
		}
	}
	p.net.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		src := p.source(in)
		if p.net.isCut(src, p.dst) {
			_ = in.Close() // refused: the link is partitioned
			continue
		}
		// Dial aside: a paused target's backlog fills up and its dials
		// hang, which must not hold up connections to come.
		p.wg.Add(1)
		go p.connect(in, src)
	}
}

// connect dials the target for in, from src, and pipes the two.
func (p *Proxy) connect(in net.Conn, src string) {
	defer p.wg.Done()
	out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = in.Close() // the node is down: refuse as it would
		return
	}
	pp := &pipe{proxy: p, src: src, dst: p.dst, a: in, b: out, done: make(chan struct{})}
	if !p.net.track(pp) {
		pp.close()
		return
	}
	p.wg.Add(2)
	go pp.copy(out, in, src, p.dst)
	go pp.copy(in, out, p.dst, src)
}

// pipe is one proxied connection: a from src, b to dst.
type pipe struct {
	proxy     *Proxy
	src, dst  string
	a, b      net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func (p *pipe) close() {
	p.closeOnce.Do(func() {
		close(p.done)
		_ = p.a.Close()
		_ = p.b.Close()
	})
}

// chunk is bytes read from one side, due for the other at due.
type chunk struct {
	b   []byte
	due time.Time
}

// copy moves bytes read from r to w, from node from to node to, holding
// them while the link loses them and delaying them by its latency.
func (p *pipe) copy(w io.Writer, r io.Reader, from, to string) {
	defer p.proxy.wg.Done()
	defer p.proxy.net.untrack(p)
	defer p.close()
	queue := make(chan chunk, 64)
	go func() {
		defer close(queue)
		for {
			buf := make([]byte, 32<<10)
			n, err := r.Read(buf)
			if n > 0 {
				_, delay, _ := p.proxy.net.state(from, to)
				select {
				case queue <- chunk{b: buf[:n], due: time.Now().Add(delay)}:
				case <-p.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range queue {
		for {
			held, _, changed := p.proxy.net.state(from, to)
			if !held {
				break
			}
			select {
			case <-changed:
			case <-p.done:
				return
			}
		}
		if wait := time.Until(c.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				return
			}
		}
		if _, err := w.Write(c.b); err != nil {
			return
		}
	}
}

// TestProxyFaults: a proxy passes bytes both ways; one-way loss holds
// them until healed, then delivers them in order; a partition closes the
// link's connections and refuses new ones; latency delays every chunk.
func TestProxyFaults(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	nw := NewNetwork()
	nw.register("127.0.0.1", "a")
	p, err := NewProxy(nw, "127.0.0.1:0", echo.Addr().String(), "b", false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	roundTrip := func(c net.Conn, msg string, wait time.Duration) (string, error) {
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, len(msg))
		_, err := io.ReadFull(c, buf)
		return string(buf), err
	}

	c := dial()
	if got, err := roundTrip(c, "x", 10*time.Second); err != nil || got != "x" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	nw.Lose("a", "b")
	if _, err := roundTrip(c, "y", 200*time.Millisecond); err == nil {
		t.Fatal("bytes passed a lossy link")
	}
	nw.Heal()
	buf := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "y" {
		t.Fatalf("held bytes after the heal: %q, %v", buf, err)
	}

	nw.Partition("a", "b")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("a connection across a partition stayed open")
	}
	if _, err := roundTrip(dial(), "z", 10*time.Second); err == nil {
		t.Fatal("a new connection across a partition was served")
	}
	nw.Heal()

	nw.Delay("b", 150*time.Millisecond)
	c = dial()
	start := time.Now()
	if got, err := roundTrip(c, "w", 10*time.Second); err != nil || got != "w" {
		t.Fatalf("through a slow link: %q, %v", got, err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("a round trip over a link with 150 ms each way took %s", took)
	}
}
