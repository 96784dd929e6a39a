package raftnode

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	raftcmdv1 "github.com/cairndb/cairn/api/cairn/raftcmd/v1"
	"github.com/cairndb/cairn/fsm"
	"google.golang.org/protobuf/encoding/protowire"
)

// The child process of TestNodeStopsOnNewerCommand reads what to do from
// these variables.
const (
	newerCommandDir  = "RAFTNODE_TEST_NEWER_COMMAND_DIR"
	newerCommandAddr = "RAFTNODE_TEST_NEWER_COMMAND_ADDR"
	newerCommandRun  = "RAFTNODE_TEST_NEWER_COMMAND_RUN"
)

// TestNodeStopsOnNewerCommand: a node whose log holds a command of a
// newer release (a command type this build does not know, as an older
// node would meet one from a newer leader) stops: the process dies in
// Raft's FSM goroutine with a message naming the entry, what was unknown
// and that the node must be upgraded. It stops the same way when started
// again, and its state keeps nothing of the entry. The node runs in a
// child process, since the stop ends the process.
func TestNodeStopsOnNewerCommand(t *testing.T) {
	if dir := os.Getenv(newerCommandDir); dir != "" {
		runNewerCommandNode(t, dir, os.Getenv(newerCommandAddr), os.Getenv(newerCommandRun))
		return
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	want := regexp.MustCompile(`panic: fsm: entry (\d+): command unknown to this build \(field cairn\.raftcmd\.v1\.Command\.40\): ` +
		`it comes from a newer cairn release; upgrade this node to that release`)
	var applied, entry uint64
	for _, run := range []string{"propose", "restart"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNodeStopsOnNewerCommand$", "-test.count=1")
		cmd.Env = append(os.Environ(), newerCommandDir+"="+dir, newerCommandAddr+"="+addr, newerCommandRun+"="+run)
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		m := want.FindSubmatch(out)
		if !errors.As(err, &exitErr) || m == nil {
			t.Fatalf("%s: the node did not stop with a message naming the entry and telling to upgrade (exit %v):\n%s", run, err, out)
		}
		n, _ := strconv.ParseUint(string(m[1]), 10, 64)
		if entry != 0 && n != entry {
			t.Fatalf("%s: stopped on entry %d, first on %d", run, n, entry)
		}
		entry = n
		if a := regexp.MustCompile(`applied=(\d+)`).FindSubmatch(out); a != nil {
			applied, _ = strconv.ParseUint(string(a[1]), 10, 64)
		}
	}
	f, err := fsm.Open(fsm.Options{Dir: filepath.Join(dir, "fsm"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if applied == 0 || entry <= applied || f.AppliedIndex() >= entry {
		t.Fatalf("applied index %d after the stops (%d before the entry), want it below entry %d", f.AppliedIndex(), applied, entry)
	}
	if _, err := f.Namespace("before"); err != nil {
		t.Fatalf("the write before the entry is gone: %v", err)
	}
}

// runNewerCommandNode is the child: a one-node cluster in dir on addr. On
// the "propose" run it forms the cluster, applies a command, prints the
// applied index and proposes a command of a newer release; on "restart"
// it only starts again. Either way its FSM must stop the process; if it
// does not, the child fails after a while.
func runNewerCommandNode(t *testing.T, dir, addr, run string) {
	cfg := testConfig("n1", dir, addr)
	m := mustStartMember(t, cfg, dir)
	if run == "propose" {
		if err := m.node.Bootstrap([]Server{{ID: "n1", Address: m.node.RaftAddr(), Voter: true}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, waitLong, "leadership", m.node.IsLeader)
		if _, err := m.node.Apply(ctxFor(t, waitLong), putNamespace("before")); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("applied=%d\n", m.fsm.AppliedIndex())
		newer := &raftcmdv1.Command{}
		op := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "x")
		newer.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 40, protowire.BytesType), op))
		_, err := m.node.Apply(ctxFor(t, waitLong), newer)
		t.Logf("Apply of a command of a newer release returned %v", err)
	}
	waitFor(t, waitLong, "the node to stop on the entry it cannot apply", func() bool { return false })
}
