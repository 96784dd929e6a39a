package server

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	cairnv1 "github.com/cairndb/cairn/api/cairn/v1"
)

// network carries the Raft-port connections of an in-process cluster and
// can cut a node off from the others: every connection it has made to or
// from that node is closed, and new ones are refused, until it heals.
type network struct {
	mu       sync.Mutex
	addrs    map[string]string // Raft address -> node id
	isolated map[string]bool
	conns    []netConn
}

// netConn is a connection the network made: from a node, to a Raft
// address (whose node may be registered only after the dial).
type netConn struct {
	from, addr string
	c          net.Conn
}

var errPartitioned = errors.New("network: partitioned")

func newNetwork() *network {
	return &network{addrs: map[string]string{}, isolated: map[string]bool{}}
}

// dialer returns node id's Dial hook.
func (nw *network) dialer(id string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		nw.mu.Lock()
		to := nw.addrs[addr]
		blocked := nw.isolated[id] || nw.isolated[to]
		nw.mu.Unlock()
		if blocked {
			return nil, errPartitioned
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		nw.mu.Lock()
		defer nw.mu.Unlock()
		if nw.isolated[id] || nw.isolated[to] {
			_ = c.Close()
			return nil, errPartitioned
		}
		nw.conns = append(nw.conns, netConn{from: id, addr: addr, c: c})
		return c, nil
	}
}

// isolate cuts node id off from every other node.
func (nw *network) isolate(id string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.isolated[id] = true
	kept := nw.conns[:0]
	for _, c := range nw.conns {
		if c.from == id || nw.addrs[c.addr] == id {
			_ = c.c.Close()
		} else {
			kept = append(kept, c)
		}
	}
	nw.conns = kept
}

// heal reconnects every node.
func (nw *network) heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.isolated = map[string]bool{}
}

// TestPartitionedLeaderReads: a leader cut off from the others keeps
// being asked for linearizable reads; once the majority's new leader has
// acknowledged a write, no read from the old leader may return the state
// before it. Reads served during the partition fail instead.
func TestPartitionedLeaderReads(t *testing.T) {
	nw := newNetwork()
	c := mustStartCluster(t, 3, clusterOptions{Configure: func(id string, cfg *NodeConfig) {
		cfg.Raft.Dial = nw.dialer(id)
	}})
	for _, n := range c.running() {
		nw.mu.Lock()
		nw.addrs[n.Node.RaftAddr()] = n.id
		nw.mu.Unlock()
	}
	old := c.leader(t)
	mustPutNamespace(t, old, "part")
	mustPutKey(t, old, "part", "o", "k", "before")

	type read struct {
		start, end time.Time
		value      string
		err        error
	}
	var mu sync.Mutex
	var reads []read
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ { // readers that talk to the old leader only
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				start := time.Now()
				resp, err := old.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "part", Object: "o", Key: "k"})
				cancel()
				r := read{start: start, end: time.Now(), err: err}
				if err == nil {
					r.value = resp.GetValue().GetStringValue()
				}
				mu.Lock()
				reads = append(reads, r)
				mu.Unlock()
			}
		}()
	}

	nw.isolate(old.id)
	var others []*testNode
	for _, n := range c.running() {
		if n != old {
			others = append(others, n)
		}
	}
	var acked time.Time
	waitFor(t, waitLong, "the majority to elect a new leader and acknowledge a write", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := others[0].objects().PutKey(ctx, &cairnv1.PutKeyRequest{Namespace: "part", Object: "o", Key: "k",
			RequestId: "after-partition", Content: &cairnv1.PutKeyRequest_Value{Value: jsonValue(t, "after")}})
		if err == nil {
			acked = time.Now()
		}
		return err == nil
	})
	// Keep reading from the old leader for a while after the write.
	waitFor(t, waitLong, "reads after the acknowledged write", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, r := range reads {
			if r.start.After(acked) {
				n++
			}
		}
		return n >= 12 && time.Since(acked) > 1500*time.Millisecond
	})
	close(stop)
	wg.Wait()

	stale, failed, served := 0, 0, 0
	for _, r := range reads {
		if !r.start.After(acked) {
			continue
		}
		switch {
		case r.err != nil:
			failed++
		case r.value == "before":
			stale++
		default:
			served++
		}
	}
	if stale > 0 {
		t.Fatalf("the partitioned old leader answered %d linearizable reads with the state before a write acknowledged by the new leader", stale)
	}
	t.Logf("after the write: %d reads from the old leader failed, %d served the new value", failed, served)

	// Healed, the old leader catches up and serves the new value.
	nw.heal()
	waitFor(t, waitLong, "the old leader to serve the new value after healing", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := old.objects().GetKey(ctx, &cairnv1.GetKeyRequest{Namespace: "part", Object: "o", Key: "k"})
		return err == nil && resp.GetValue().GetStringValue() == "after"
	})
}
