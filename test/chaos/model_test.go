package chaos

import (
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// keyState is the model's state of one key. rev is the key's
// mod_revision when revKnown; otherwise (the last write's answer was
// never seen, or the key is absent) a lower bound of the next write's
// revision.
type keyState struct {
	exists   bool
	value    string
	rev      uint64
	revKnown bool
}

// checkRead checks what a read found against s, and learns the key's
// revision when the model did not know it.
func checkRead(s keyState, found bool, value string, rev uint64) (bool, keyState) {
	if found != s.exists {
		return false, s
	}
	if !found {
		return true, s
	}
	if value != s.value {
		return false, s
	}
	if s.revKnown {
		return rev == s.rev, s
	}
	if rev <= s.rev {
		return false, s
	}
	s.rev, s.revKnown = rev, true
	return true, s
}

// stepKV is the sequential specification of one key. A write whose
// outcome is unknown is modelled as applied: porcupine may order it after
// every other operation, which is the same as it never happening.
func stepKV(state, input, output any) (bool, any) {
	s, in, out := state.(keyState), input.(kvInput), output.(kvOutput)
	written := keyState{exists: true, value: in.value, rev: out.rev, revKnown: true}
	if out.unknown {
		written.rev, written.revKnown = s.rev, false
	}
	switch in.op {
	case opGet:
		return checkRead(s, out.found, out.value, out.rev)
	case opPut:
		return out.unknown || out.rev > s.rev, written
	case opDelete:
		if out.unknown {
			return true, keyState{rev: s.rev}
		}
		if out.deleted != s.exists {
			return false, s
		}
		if !out.deleted {
			return true, s
		}
		return out.rev > s.rev, keyState{rev: out.rev, revKnown: true}
	case opCAS:
		holds := (in.expectAbsent && !s.exists) || (!in.expectAbsent && s.exists && s.value == in.expect)
		if out.unknown {
			if holds {
				return true, written
			}
			return true, s
		}
		if out.succeeded != holds {
			return false, s
		}
		if holds {
			return out.rev > s.rev, written
		}
		return checkRead(s, out.found, out.value, out.rev)
	}
	return false, s
}

// kvModel is the key/value store as porcupine checks it, one partition
// per key.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return keyState{} },
	Step: stepKV,
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		res := "?"
		switch {
		case out.unknown:
		case in.op == opGet || (in.op == opCAS && !out.succeeded):
			res = "absent"
			if out.found {
				res = fmt.Sprintf("%s@%d", out.value, out.rev)
			}
			if in.op == opCAS {
				res = "failed, " + res
			}
		case in.op == opDelete:
			res = fmt.Sprintf("deleted=%v@%d", out.deleted, out.rev)
		default:
			res = fmt.Sprintf("ok@%d", out.rev)
		}
		switch in.op {
		case opGet:
			return fmt.Sprintf("get(%s) → %s", in.key, res)
		case opPut:
			return fmt.Sprintf("put(%s, %s) → %s", in.key, in.value, res)
		case opDelete:
			return fmt.Sprintf("delete(%s) → %s", in.key, res)
		}
		exp := in.expect
		if in.expectAbsent {
			exp = "absent"
		}
		return fmt.Sprintf("cas(%s, %s → %s) → %s", in.key, exp, in.value, res)
	},
	DescribeState: func(state any) string {
		s := state.(keyState)
		if !s.exists {
			return fmt.Sprintf("absent (rev > %d)", s.rev)
		}
		if !s.revKnown {
			return fmt.Sprintf("%s@>%d", s.value, s.rev)
		}
		return fmt.Sprintf("%s@%d", s.value, s.rev)
	},
}

// checkLinearizable checks ops against the model. When the history is not
// linearizable it writes porcupine's visualization, with the faults as
// annotations, to the directory dir returns and returns its path.
func checkLinearizable(ops []kvOp, end int64, faults []faultRecord, dir func() string, timeout time.Duration) (porcupine.CheckResult, string, error) {
	hist := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		ret := op.ret
		if op.unknownSpan {
			ret = end
		}
		hist = append(hist, porcupine.Operation{ClientId: op.client, Input: op.in, Call: op.call, Output: op.out, Return: ret})
	}
	// The verbose check keeps, for every operation, a copy of the longest
	// linearization that reaches it: memory grows with the square of a
	// partition's operations. Only a history that is not linearizable is
	// checked again verbosely, to be drawn. (A 30-minute run's history,
	// about 1.5 million operations over 8 keys, still takes more than 24 GB
	// to check either way: runs of 12 minutes are checked.)
	res := porcupine.CheckOperationsTimeout(kvModel, hist, timeout)
	if res != porcupine.Illegal {
		return res, "", nil
	}
	res, info := porcupine.CheckOperationsVerbose(kvModel, hist, timeout)
	if res != porcupine.Illegal {
		return res, "", fmt.Errorf("the history was not linearizable, then its verbose check found %v", res)
	}
	var notes []porcupine.Annotation
	for _, f := range faults {
		notes = append(notes, porcupine.Annotation{Tag: "faults", Start: f.start, End: f.end,
			Description: f.kind.String(), Details: f.detail, BackgroundColor: "#fbb"})
	}
	info.AddAnnotations(notes)
	path := filepath.Join(dir(), "linearizability.html")
	if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
		return res, "", fmt.Errorf("writing the visualization: %w", err)
	}
	return res, path, nil
}
