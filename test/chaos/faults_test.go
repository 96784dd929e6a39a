package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cairndb/cairn/client"
)

// faultKind is one kind of fault the harness injects.
type faultKind int

const (
	killFollower faultKind = iota
	killLeader
	killRandom
	pauseNode       // SIGSTOP … SIGCONT: a stalled disk or a long GC pause
	isolateLeader   // the leader cut off from every peer
	splitMinority   // a minority cut off from the majority
	oneWayLoss      // a node's messages to its peers lost, theirs to it not
	addLatency      // added latency on every link of a node
	transferLeader  // leadership handed to a follower
	replaceMember   // a member removed under load, a fresh node added
	crashAll        // every node killed at once, then restarted
	snapshotCatchUp // a node down while the log is compacted past it
	numFaultKinds
)

var faultNames = [...]string{"kill-follower", "kill-leader", "kill-random", "pause", "isolate-leader",
	"split", "one-way-loss", "latency", "transfer-leader", "replace-member", "crash-all", "snapshot-catch-up"}

func (k faultKind) String() string { return faultNames[k] }

// parseFaultKinds parses a comma-separated list of fault names; empty
// means every kind.
func parseFaultKinds(s string) ([]faultKind, error) {
	if s == "" {
		var all []faultKind
		for k := faultKind(0); k < numFaultKinds; k++ {
			all = append(all, k)
		}
		return all, nil
	}
	var out []faultKind
	for _, name := range strings.Split(s, ",") {
		found := false
		for k := faultKind(0); k < numFaultKinds; k++ {
			if k.String() == strings.TrimSpace(name) {
				out, found = append(out, k), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown fault %q (known: %s)", name, strings.Join(faultNames[:], ","))
		}
	}
	return out, nil
}

// fault is one scheduled fault: its kind, when it starts (after the run
// starts, or after the previous fault has healed, whichever is later),
// how long it lasts, and a random number that picks its target.
type fault struct {
	kind  faultKind
	at    time.Duration
	hold  time.Duration
	pick  int
	delay time.Duration // addLatency
	// jitter, when set, is latency added to every node's links for the
	// whole of the fault, so that it meets a slow network (long runs).
	jitter time.Duration
}

// schedule draws the faults of a run from seed: each kind of kinds once,
// in a random order, then random kinds until the run's duration is used,
// a third of these on a network slowed by jitter.
// The same seed and arguments give the same schedule.
func schedule(seed int64, kinds []faultKind, duration time.Duration) []fault {
	rng := rand.New(rand.NewSource(seed))
	order := append([]faultKind(nil), kinds...)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var out []fault
	at := time.Duration(0)
	for i := 0; ; i++ {
		gap := time.Duration(500+rng.Intn(2000)) * time.Millisecond
		f := fault{at: at + gap, hold: time.Duration(1000+rng.Intn(3000)) * time.Millisecond, pick: rng.Intn(1 << 20),
			delay: time.Duration(20+rng.Intn(180)) * time.Millisecond}
		jitter := time.Duration(5+rng.Intn(35)) * time.Millisecond
		if i < len(order) {
			f.kind = order[i]
		} else {
			f.kind = kinds[rng.Intn(len(kinds))]
			if rng.Intn(3) == 0 {
				f.jitter = jitter
			}
		}
		// Each fault also needs time to heal and recover; ~4 s is typical.
		at = f.at + f.hold + 4*time.Second
		if i >= len(order) && at > duration {
			return out
		}
		out = append(out, f)
	}
}

// faultRecord is a fault as it happened, for the summary and the
// visualization.
type faultRecord struct {
	kind       faultKind
	detail     string
	start, end int64 // nanoseconds since the run started
}

// inject carries out f on the cluster: the fault is in place for f.hold,
// then undone (network faults by the caller's Heal). It returns what it
// did.
func (r *run) inject(f fault) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	members := r.c.members()
	leader := r.c.leader(ctx)
	if leader == nil {
		var err error
		if leader, err = r.c.waitLeader(30 * time.Second); err != nil {
			return "", err
		}
	}
	var followers []*node
	for _, n := range members {
		if n != leader {
			followers = append(followers, n)
		}
	}
	pickNode := func(ns []*node) *node { return ns[f.pick%len(ns)] }
	hold := func() { time.Sleep(f.hold) } // the fault stays in place this long
	switch f.kind {
	case killFollower, killLeader, killRandom:
		victim := map[faultKind]*node{killFollower: pickNode(followers), killLeader: leader, killRandom: pickNode(members)}[f.kind]
		victim.kill()
		hold()
		return "kill -9 " + victim.id, victim.start(r.c.bin)
	case pauseNode:
		// Paused longer than the clients' timeout (5 s), so that the
		// clients on it must move to another node.
		victim := pickNode(members)
		if err := victim.pause(); err != nil {
			return "", err
		}
		time.Sleep(f.hold + 4*time.Second)
		victim.resume()
		return fmt.Sprintf("SIGSTOP %s for %s (leader %s)", victim.id, f.hold+4*time.Second, leader.id), nil
	case isolateLeader:
		for _, n := range followers {
			r.c.net.Partition(leader.id, n.id)
		}
		hold()
		return "isolate leader " + leader.id, nil
	case splitMinority:
		shuffled := append([]*node(nil), members...)
		rng := rand.New(rand.NewSource(int64(f.pick)))
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		minority, majority := shuffled[:(len(shuffled)-1)/2], shuffled[(len(shuffled)-1)/2:]
		clients := "clients reach both sides"
		for _, a := range minority {
			for _, b := range majority {
				r.c.net.Partition(a.id, b.id)
			}
			if f.pick%2 == 1 {
				r.c.net.Partition(a.id, clientSide)
				clients = "clients reach the majority only"
			}
		}
		hold()
		return fmt.Sprintf("split %v | %v (leader %s, %s)", ids(minority), ids(majority), leader.id, clients), nil
	case oneWayLoss:
		// A quarter of the time the leader goes mute to its peers (they
		// hear nothing from it, it hears them), a quarter a follower
		// does, a quarter a follower goes deaf (it hears nothing, its
		// peers hear it: it calls elections), and a quarter the leader's
		// answers to clients are lost while their requests arrive:
		// clients time out on writes that happened and retry them, with
		// their request ids, elsewhere.
		victim, deaf := leader, false
		switch f.pick % 4 {
		case 3:
			r.c.net.Lose(leader.id, clientSide)
			hold()
			return "answers from leader " + leader.id + " to clients lost", nil
		case 2:
			victim, deaf = pickNode(followers), true
		case 1:
			victim = pickNode(followers)
		}
		for _, n := range members {
			switch {
			case n == victim:
			case deaf:
				r.c.net.Lose(n.id, victim.id)
			default:
				r.c.net.Lose(victim.id, n.id)
			}
		}
		hold()
		if deaf {
			return fmt.Sprintf("%s deaf to its peers (leader %s)", victim.id, leader.id), nil
		}
		return fmt.Sprintf("%s mute to its peers (leader %s)", victim.id, leader.id), nil
	case addLatency:
		victim := pickNode(members)
		r.c.net.Delay(victim.id, f.delay)
		hold()
		return fmt.Sprintf("+%s on %s's links", f.delay, victim.id), nil
	case transferLeader:
		to := pickNode(followers)
		cl := r.c.adminOf(members)
		defer cl.Close()
		got, err := cl.TransferLeadership(ctx, to.id)
		if err != nil {
			return "", fmt.Errorf("transfer leadership %s → %s: %w", leader.id, to.id, err)
		}
		return fmt.Sprintf("transfer leadership %s → %s (now %s)", leader.id, to.id, got), nil
	case replaceMember:
		victim := pickNode(members)
		fresh, err := r.c.replace(victim)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("replace %s with %s (leader %s)", victim.id, fresh.id, leader.id), nil
	case crashAll:
		for _, n := range members {
			n.kill()
		}
		hold()
		for _, n := range members {
			if err := n.start(r.c.bin); err != nil {
				return "", err
			}
		}
		return "kill -9 every node", nil
	case snapshotCatchUp:
		return r.snapshotCatchUp(ctx, pickNode(followers), members)
	}
	return "", fmt.Errorf("unknown fault %d", f.kind)
}

// snapshotCatchUp stops victim, lets the others apply more entries than
// they keep after a snapshot, snapshots and compacts every other member,
// then restarts victim, which can only catch up by installing a snapshot
// from the leader; it checks that it did.
func (r *run) snapshotCatchUp(ctx context.Context, victim *node, members []*node) (string, error) {
	var others []*node
	for _, n := range members {
		if n != victim {
			others = append(others, n)
		}
	}
	st, err := others[0].admin.ClusterOf(ctx, 0)
	if err != nil {
		return "", err
	}
	victim.kill()
	atKill := st.CommitIndex
	trailing, _ := strconv.ParseUint(trailingLogs, 10, 64)
	// The workload writes meanwhile; wait until it has written past what
	// the others keep after a snapshot (with a margin), then make them
	// snapshot now.
	want := atKill + trailing + 512
	var snapIndex uint64
	if err := retry(60*time.Second, func(ctx context.Context) error {
		st, err := others[0].admin.ClusterOf(ctx, 0)
		if err != nil {
			return err
		}
		if st.AppliedIndex < want {
			return fmt.Errorf("applied %d, waiting for %d", st.AppliedIndex, want)
		}
		return nil
	}); err != nil {
		// The fault did not happen as meant, but the victim must not stay
		// down: the harness would count that as the cluster failing to
		// recover.
		if serr := victim.start(r.c.bin); serr != nil {
			return "", fmt.Errorf("snapshot catch-up: the workload did not advance the log (%w), and restarting %s failed: %w", err, victim.id, serr)
		}
		return "", fmt.Errorf("snapshot catch-up: the workload did not advance the log: %w", err)
	}
	for _, n := range others {
		if idx, err := n.admin.SnapshotOf(ctx, 0); err == nil {
			snapIndex = max(snapIndex, idx)
		}
	}
	if err := victim.start(r.c.bin); err != nil {
		return "", err
	}
	// The victim's own log ends at or below atKill: a snapshot newer
	// than that on its disk came from the leader.
	if err := retry(60*time.Second, func(context.Context) error {
		if idx := newestSnapshot(victim); idx <= atKill {
			return fmt.Errorf("%s has no snapshot newer than %d (newest %d)", victim.id, atKill, idx)
		}
		return nil
	}); err != nil {
		return "", fmt.Errorf("snapshot catch-up: %w", err)
	}
	return fmt.Sprintf("%s down at %d, others snapshotted at %d, %s installed snapshot %d", victim.id, atKill, snapIndex, victim.id, newestSnapshot(victim)), nil
}

// newestSnapshot returns the index of the newest snapshot in n's
// snapshot store (directories named term-index-millis), 0 if none.
func newestSnapshot(n *node) uint64 {
	entries, _ := os.ReadDir(filepath.Join(n.dir, "data", "raft", "snapshots"))
	var newest uint64
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if len(parts) != 3 || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if idx, err := strconv.ParseUint(parts[1], 10, 64); err == nil {
			newest = max(newest, idx)
		}
	}
	return newest
}

func ids(ns []*node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.id)
	}
	return out
}

// adminOf returns a client of ms straight to their processes, for cluster
// operations that any member forwards to the leader. Close it.
func (c *cluster) adminOf(ms []*node) *client.Client {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.grpcAddr)
	}
	cl, err := client.New(client.Config{Endpoints: eps, RequestTimeout: 10 * time.Second, RetryFor: 5 * time.Second})
	if err != nil {
		panic(err) // only an empty list fails, and ms is never empty
	}
	return cl
}
