package raftnode

import (
	"context"
	"errors"
	"fmt"
	"github.com/cairndb/cairn/internal/testwait"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// Tests of the Raft wiring: real nodes over TCP on loopback, each over a
// real FSM in t.TempDir().

const waitLong = 20 * time.Second

// waitFor polls cond until it holds, failing the test when timeout passes
// first.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

// member is one node of a test group and its FSM.
type member struct {
	id      string
	dir     string
	node    *Node
	fsm     *fsm.FSM
	stopped bool
}

func testConfig(id, dir, bind string) Config {
	return Config{
		ID:                 id,
		Dir:                filepath.Join(dir, "raft"),
		BindAddr:           bind,
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		NoSync:             true,
		LogOutput:          io.Discard,
		LogLevel:           "error",
	}
}

// mustStartMember opens an FSM in dir and starts a node over it.
func mustStartMember(t testing.TB, cfg Config, dir string) *member {
	t.Helper()
	f, err := fsm.Open(fsm.Options{Dir: filepath.Join(dir, "fsm"), NoSync: true})
	if err != nil {
		t.Fatalf("fsm.Open: %v", err)
	}
	n, err := New(cfg, f)
	if err != nil {
		_ = f.Close()
		t.Fatalf("New(%s): %v", cfg.ID, err)
	}
	return &member{id: cfg.ID, dir: dir, node: n, fsm: f}
}

func (m *member) stop() {
	if m.stopped {
		return
	}
	m.stopped = true
	_ = m.node.Shutdown()
	_ = m.fsm.Close()
}

// group is a set of members of one Raft group.
type group struct {
	members []*member
}

// mustStartGroup starts n members on free ports and bootstraps them all
// with the same configuration.
func mustStartGroup(t testing.TB, n int) *group {
	t.Helper()
	return mustStartGroupWith(t, n, nil)
}

// mustStartGroupWith is mustStartGroup with each member's configuration
// changed by change (nil: none).
func mustStartGroupWith(t testing.TB, n int, change func(*Config)) *group {
	t.Helper()
	root := t.TempDir() // first: its removal must run after the members stop
	g := &group{}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, m := range g.members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.stop()
			}()
		}
		wg.Wait()
	})
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("node%d", i)
		dir := filepath.Join(root, id)
		cfg := testConfig(id, dir, "127.0.0.1:0")
		if change != nil {
			change(&cfg)
		}
		g.members = append(g.members, mustStartMember(t, cfg, dir))
	}
	var servers []Server
	for _, m := range g.members {
		servers = append(servers, Server{ID: m.id, Address: m.node.RaftAddr(), Voter: true})
	}
	for _, m := range g.members {
		if err := m.node.Bootstrap(servers); err != nil {
			t.Fatalf("%s: Bootstrap: %v", m.id, err)
		}
	}
	g.leader(t)
	return g
}

func (g *group) running() []*member {
	var out []*member
	for _, m := range g.members {
		if !m.stopped {
			out = append(out, m)
		}
	}
	return out
}

// leader waits until every running member names the same leader, which
// knows it leads, and returns it.
func (g *group) leader(t testing.TB) *member {
	t.Helper()
	var leader *member
	waitFor(t, waitLong, "a leader every member agrees on", func() bool {
		leader = nil
		var id string
		for i, m := range g.running() {
			lid, addr := m.node.Leader()
			if lid == "" || addr == "" || i > 0 && lid != id {
				return false
			}
			id = lid
		}
		for _, m := range g.running() {
			if m.id == id && m.node.IsLeader() {
				leader = m
			}
		}
		return leader != nil
	})
	return leader
}

func (g *group) followers(t testing.TB) []*member {
	t.Helper()
	l := g.leader(t)
	var out []*member
	for _, m := range g.running() {
		if m != l {
			out = append(out, m)
		}
	}
	return out
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func putNamespace(name string) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_PutNamespace{PutNamespace: &raftcmdv1.PutNamespace{Name: name}}}
}

func putKey(ns, object, key, value string) *raftcmdv1.Command {
	return &raftcmdv1.Command{Op: &raftcmdv1.Command_BatchWrite{BatchWrite: &raftcmdv1.BatchWrite{
		Namespace: ns, Object: object,
		Puts: []*raftcmdv1.KeyPut{{Key: key, Value: []byte(value), Encoding: raftcmdv1.ValueEncoding_VALUE_ENCODING_BINARY}},
	}}}
}

// mustApply applies cmd on the current leader, trying again while
// leadership moves (nothing was appended then).
func mustApply(t testing.TB, g *group, cmd *raftcmdv1.Command) *raftcmdv1.Result {
	t.Helper()
	for attempt := 0; ; attempt++ {
		res, err := g.leader(t).node.Apply(ctxFor(t, 10*time.Second), proto.Clone(cmd).(*raftcmdv1.Command))
		if errors.Is(err, ErrNotLeader) && attempt < 50 {
			continue
		}
		if err != nil {
			t.Fatalf("Apply(%v): %v", cmd, err)
		}
		return res
	}
}

func TestConfigValidateReportsEverythingAtOnce(t *testing.T) {
	err := Config{}.Validate()
	if err == nil {
		t.Fatal("the zero Config is valid")
	}
	for _, want := range []string{"ID is required", "Dir is required", "BindAddr is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %q, does not report %q", err, want)
		}
	}
	bad := Config{ID: "a", Dir: "d", BindAddr: "127.0.0.1:0", ElectionTimeout: -1, SnapshotRetain: -1, LogLevel: "loud"}
	err = bad.Validate()
	for _, want := range []string{"durations must not be negative", "SnapshotRetain", `"loud"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v, does not report %q", bad, err, want)
		}
	}
	good := DefaultConfig()
	good.ID, good.Dir, good.BindAddr = "a", "d", "127.0.0.1:0"
	if err := good.Validate(); err != nil {
		t.Errorf("DefaultConfig plus the required fields: %v", err)
	}
	// New validates before it touches anything.
	f, err := fsm.Open(fsm.Options{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := New(Config{LogOutput: io.Discard}, f); err == nil || !strings.Contains(err.Error(), "ID is required") {
		if n != nil {
			_ = n.Shutdown()
		}
		t.Fatalf("New(Config{}) = %v, want the validation error", err)
	}
}

// TestApplyReadIndexWaitApplied covers the write and read paths of a
// three-node group.
func TestApplyReadIndexWaitApplied(t *testing.T) {
	g := mustStartGroup(t, 3)
	res := mustApply(t, g, putNamespace("ns"))
	leader := g.leader(t)
	if res.Revision == 0 || res.GetNamespace().GetNamespace().GetName() != "ns" || !res.GetNamespace().Created {
		t.Fatalf("Apply(PutNamespace) = %v", res)
	}
	// The revision is the index of the log entry that holds the command.
	var l raft.Log
	if err := leader.node.store.GetLog(res.Revision, &l); err != nil {
		t.Fatalf("no log entry at revision %d: %v", res.Revision, err)
	}
	var logged raftcmdv1.Command
	if err := proto.Unmarshal(l.Data, &logged); err != nil || l.Type != raft.LogCommand {
		t.Fatalf("entry %d is %v (%v), want the command", res.Revision, l.Type, err)
	}
	if logged.GetPutNamespace().GetName() != "ns" || logged.Version != fsm.CommandVersion || logged.TimeUnixMs == 0 {
		t.Fatalf("entry %d holds %v, want the stamped PutNamespace", res.Revision, &logged)
	}
	if got := leader.node.AppliedIndex(); got < res.Revision {
		t.Fatalf("leader reports applied index %d after Apply returned revision %d", got, res.Revision)
	}

	w := mustApply(t, g, putKey("ns", "obj", "k", "v1"))
	if w.Revision <= res.Revision || w.GetBatchWrite().GetCreated() != 1 {
		t.Fatalf("Apply(BatchWrite) = %v", w)
	}
	if kv, err := g.leader(t).fsm.Get("ns", "obj", "k"); err != nil || kv.ModRevision != w.Revision {
		t.Fatalf("leader FSM: k = %v, %v; want revision %d", kv, err, w.Revision)
	}

	// A domain error comes back as the FSM's error, with no result.
	leader = g.leader(t)
	bad, err := leader.node.Apply(ctxFor(t, 10*time.Second), putKey("no-such-ns", "obj", "k", "v"))
	if !errors.Is(err, fsm.ErrNamespaceNotFound) || bad != nil {
		t.Fatalf("Apply in an unknown namespace = %v, %v; want fsm.ErrNamespaceNotFound", bad, err)
	}

	// Followers refuse writes and read indexes.
	for _, f := range g.followers(t) {
		if _, err := f.node.Apply(ctxFor(t, time.Second), putKey("ns", "obj", "k", "from follower")); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s: Apply on a follower = %v, want ErrNotLeader", f.id, err)
		}
		if _, err := f.node.ReadIndex(ctxFor(t, time.Second)); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s: ReadIndex on a follower = %v, want ErrNotLeader", f.id, err)
		}
		if f.node.IsLeader() {
			t.Errorf("%s: IsLeader on a follower", f.id)
		}
	}

	// A linearizable read on a follower: the leader's read index, then
	// wait to have applied it.
	leader = g.leader(t)
	index, err := leader.node.ReadIndex(ctxFor(t, 10*time.Second))
	if err != nil {
		t.Fatalf("ReadIndex on the leader: %v", err)
	}
	if index < w.Revision {
		t.Fatalf("ReadIndex = %d, before the last write at %d", index, w.Revision)
	}
	for _, f := range g.followers(t) {
		if err := f.node.WaitApplied(ctxFor(t, 10*time.Second), index); err != nil {
			t.Fatalf("%s: WaitApplied(%d): %v", f.id, index, err)
		}
		if got := f.node.AppliedIndex(); got < w.Revision {
			t.Fatalf("%s: WaitApplied(%d) returned at applied index %d, before the write at %d", f.id, index, got, w.Revision)
		}
		if kv, err := f.fsm.Get("ns", "obj", "k"); err != nil || string(kv.Value) != "v1" {
			t.Fatalf("%s: after WaitApplied k = %v, %v", f.id, kv, err)
		}
	}
	// Waiting for an index that does not come ends with the context.
	if err := leader.node.WaitApplied(ctxFor(t, 100*time.Millisecond), index+1000); !errors.Is(err, ErrTimeout) {
		t.Fatalf("WaitApplied of a future index = %v, want ErrTimeout", err)
	}
	for _, m := range g.running() {
		waitFor(t, waitLong, m.id+" to be caught up", m.node.CaughtUp)
	}

	st := leader.node.Status()
	if st.State != "Leader" || st.LeaderID != leader.id || st.AppliedIndex < w.Revision || st.CommitIndex < w.Revision ||
		st.LastIndex < st.CommitIndex || st.Term == 0 || !st.LastContact.IsZero() {
		t.Errorf("leader Status = %+v", st)
	}
	fst := g.followers(t)[0].node.Status()
	if fst.State != "Follower" || fst.LeaderID != leader.id || fst.LastContact.IsZero() {
		t.Errorf("follower Status = %+v", fst)
	}
}

func TestTransferLeadershipAndMembership(t *testing.T) {
	g := mustStartGroup(t, 3)
	leader := g.leader(t)
	servers, err := leader.node.Servers()
	if err != nil || len(servers) != 3 {
		t.Fatalf("Servers() = %v, %v", servers, err)
	}
	for _, s := range servers {
		if !s.Voter || s.Address == "" {
			t.Errorf("server %+v", s)
		}
	}
	target := g.followers(t)[0]
	if err := target.node.TransferLeadership(leader.id); !errors.Is(err, ErrNotLeader) {
		t.Errorf("TransferLeadership on a follower = %v, want ErrNotLeader", err)
	}
	if err := leader.node.TransferLeadership("node9"); !errors.Is(err, ErrUnknownServer) {
		t.Errorf("TransferLeadership to an unknown id = %v, want ErrUnknownServer", err)
	}
	if err := leader.node.RemoveServer(ctxFor(t, 5*time.Second), "node9"); !errors.Is(err, ErrUnknownServer) {
		t.Errorf("RemoveServer of an unknown id = %v, want ErrUnknownServer", err)
	}
	if err := leader.node.TransferLeadership(target.id); err != nil {
		t.Fatalf("TransferLeadership(%s): %v", target.id, err)
	}
	waitFor(t, waitLong, "leadership to move to "+target.id, func() bool { return g.leader(t) == target })
	if _, err := leader.node.Apply(ctxFor(t, time.Second), putNamespace("x")); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Apply on the former leader = %v, want ErrNotLeader", err)
	}
	res, err := target.node.Apply(ctxFor(t, 10*time.Second), putNamespace("x"))
	if err != nil || res.Revision == 0 {
		t.Fatalf("Apply on the new leader = %v, %v", res, err)
	}
	// Transfer to whichever voter is most up to date.
	if err := target.node.TransferLeadership(""); err != nil {
		t.Fatalf("TransferLeadership(\"\"): %v", err)
	}
	waitFor(t, waitLong, "leadership to leave "+target.id, func() bool { return g.leader(t) != target })
}

// TestRestartSkipsAppliedEntries: a member that restarts on its data
// hands Raft's replayed entries to the FSM, which must skip what it has.
func TestRestartSkipsAppliedEntries(t *testing.T) {
	g := mustStartGroup(t, 3)
	mustApply(t, g, putNamespace("ns"))
	for i := range 10 {
		mustApply(t, g, putKey("ns", "obj", fmt.Sprint(i), "v"))
	}
	f := g.followers(t)[0]
	waitFor(t, waitLong, f.id+" to apply everything", func() bool { return f.node.AppliedIndex() == g.leader(t).node.AppliedIndex() })
	addr, applied := f.node.RaftAddr(), f.fsm.AppliedIndex()
	f.stop()
	last := mustApply(t, g, putKey("ns", "obj", "while-down", "v"))

	restarted := mustStartMember(t, testConfig(f.id, f.dir, addr), f.dir)
	*f = *restarted
	if got := f.fsm.AppliedIndex(); got != applied {
		t.Fatalf("reopened FSM at index %d, it had applied %d", got, applied)
	}
	waitFor(t, waitLong, f.id+" to catch up", func() bool { return f.node.AppliedIndex() >= last.Revision })
	if got := f.fsm.Applies(); got != 1 {
		t.Fatalf("restarted member applied %d commands, want only the 1 it missed", got)
	}
	waitFor(t, waitLong, f.id+" to be caught up", f.node.CaughtUp)
}
