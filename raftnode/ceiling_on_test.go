//go:build benchceiling

package raftnode

import (
	"errors"
	"testing"

	"github.com/cairndb/cairn/fsm"
)

// Run by .ci/run with the tag; the package's other tests expect writes to
// be applied.
func TestCeilingAcknowledgesWritesWithoutApplying(t *testing.T) {
	g := mustStartGroup(t, 3)
	ns := mustApply(t, g, putNamespace("ns"))
	if !ns.GetNamespace().GetCreated() {
		t.Fatalf("PutNamespace = %v, want it applied", ns)
	}
	// A write that reaches a node in one batch with another command is
	// applied: let every node apply the namespace first.
	for _, m := range g.running() {
		waitFor(t, waitLong, m.id+" past the namespace", func() bool { return m.node.AppliedIndex() >= ns.Revision })
	}
	w := mustApply(t, g, putKey("ns", "obj", "k", "v"))
	if w.GetBatchWrite() == nil || w.Revision == 0 {
		t.Fatalf("BatchWrite = %v, want a batch write's result", w)
	}
	for _, m := range g.running() {
		waitFor(t, waitLong, m.id+" past the write", func() bool { return m.node.AppliedIndex() >= w.Revision })
		if kv, err := m.fsm.Get("ns", "obj", "k"); !errors.Is(err, fsm.ErrKeyNotFound) {
			t.Errorf("%s: k = %v, %v; want it never applied", m.id, kv, err)
		}
	}
	// Anything else is applied as usual.
	if res := mustApply(t, g, putNamespace("other")); !res.GetNamespace().GetCreated() {
		t.Fatalf("PutNamespace after the write = %v, want it applied", res)
	}
}
