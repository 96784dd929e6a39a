package chaos

import (
	"fmt"
	"sort"
)

// Revisions are Raft log indexes, one per write, so they order all writes
// across keys, which the per-key linearizability check cannot see:
//   - two answered writes never share a revision (each op here is one
//     write of one key);
//   - real time: a write answered before another was invoked has the
//     smaller revision.
//
// checkRevisions returns what breaks either rule.
func checkRevisions(ops []kvOp) []string {
	var writes []kvOp
	for _, op := range ops {
		if !op.out.unknown && (op.in.op == opPut || (op.in.op == opCAS && op.out.succeeded) || (op.in.op == opDelete && op.out.deleted)) {
			writes = append(writes, op)
		}
	}
	var problems []string
	byRev := map[uint64]kvOp{}
	for _, w := range writes {
		if other, ok := byRev[w.out.rev]; ok {
			problems = append(problems, fmt.Sprintf("revision %d answered to two writes: %s and %s", w.out.rev, describe(other), describe(w)))
		}
		byRev[w.out.rev] = w
	}
	// Sweep by invocation: each write's revision must exceed that of
	// every write answered before it was invoked.
	byRet := append([]kvOp(nil), writes...)
	sort.Slice(byRet, func(i, j int) bool { return byRet[i].ret < byRet[j].ret })
	sort.Slice(writes, func(i, j int) bool { return writes[i].call < writes[j].call })
	var done int
	var maxRev uint64
	var maxOp kvOp
	for _, w := range writes {
		for done < len(byRet) && byRet[done].ret < w.call {
			if byRet[done].out.rev > maxRev {
				maxRev, maxOp = byRet[done].out.rev, byRet[done]
			}
			done++
		}
		if w.out.rev <= maxRev {
			problems = append(problems, fmt.Sprintf("%s was invoked after %s was answered, but has the smaller revision", describe(w), describe(maxOp)))
		}
	}
	return problems
}

func describe(op kvOp) string {
	return fmt.Sprintf("client %d %s", op.client, kvModel.DescribeOperation(op.in, op.out))
}

// checkAppliedOnce returns the puts (each writes a value no other write
// does) that some watcher saw applied at more than one revision: a write
// retried with its request id that was applied twice.
func checkAppliedOnce(watchers []*watcher) []string {
	var problems []string
	for i, w := range watchers {
		w.mu.Lock()
		at := map[write]uint64{}
		for _, seg := range w.segments {
			for _, e := range seg.events {
				if e.deleted {
					continue
				}
				k := write{key: e.key, value: e.value}
				if rev, ok := at[k]; ok && rev != e.rev {
					problems = append(problems, fmt.Sprintf("watcher %d: %s=%s applied at revisions %d and %d", i, e.key, e.value, rev, e.rev))
				}
				at[k] = e.rev
			}
		}
		w.mu.Unlock()
	}
	return problems
}
