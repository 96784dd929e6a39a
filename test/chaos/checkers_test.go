package chaos

import (
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// These tests feed the checkers histories with known faults, so that a
// checker that cannot fail would fail here.

func put(client int, key, value string, rev uint64, call, ret int64) kvOp {
	return kvOp{client: client, in: kvInput{op: opPut, key: key, value: value}, out: kvOutput{rev: rev}, call: call, ret: ret}
}

func get(client int, key, value string, rev uint64, call, ret int64) kvOp {
	return kvOp{client: client, in: kvInput{op: opGet, key: key}, out: kvOutput{found: value != "", value: value, rev: rev}, call: call, ret: ret}
}

func TestLinearizabilityChecker(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []kvOp
		want porcupine.CheckResult
	}{
		{"sequential", []kvOp{put(0, "k", "a", 5, 0, 10), get(1, "k", "a", 5, 20, 30)}, porcupine.Ok},
		{"concurrent read may see either", []kvOp{put(0, "k", "a", 5, 0, 10), put(0, "k", "b", 7, 20, 40), get(1, "k", "a", 5, 25, 30)}, porcupine.Ok},
		{"stale read", []kvOp{put(0, "k", "a", 5, 0, 10), put(0, "k", "b", 7, 20, 30), get(1, "k", "a", 5, 40, 50)}, porcupine.Illegal},
		{"lost write", []kvOp{put(0, "k", "a", 5, 0, 10), get(1, "k", "", 0, 20, 30)}, porcupine.Illegal},
		{"revision goes back", []kvOp{put(0, "k", "a", 5, 0, 10), put(0, "k", "b", 4, 20, 30)}, porcupine.Illegal},
		{"read of a revision not written", []kvOp{put(0, "k", "a", 5, 0, 10), get(1, "k", "a", 6, 20, 30)}, porcupine.Illegal},
		{"unknown write may have happened", []kvOp{
			{client: 0, in: kvInput{op: opPut, key: "k", value: "a"}, out: kvOutput{unknown: true}, call: 0, unknownSpan: true},
			get(1, "k", "a", 9, 20, 30)}, porcupine.Ok},
		{"unknown write may not have happened", []kvOp{
			{client: 0, in: kvInput{op: opPut, key: "k", value: "a"}, out: kvOutput{unknown: true}, call: 0, unknownSpan: true},
			get(1, "k", "", 0, 20, 30)}, porcupine.Ok},
		{"cas succeeded on a value that was not there", []kvOp{put(0, "k", "a", 5, 0, 10),
			{client: 1, in: kvInput{op: opCAS, key: "k", value: "c", expect: "b"}, out: kvOutput{succeeded: true, rev: 8}, call: 20, ret: 30}}, porcupine.Illegal},
		{"failed cas reads the value", []kvOp{put(0, "k", "a", 5, 0, 10),
			{client: 1, in: kvInput{op: opCAS, key: "k", value: "c", expect: "b"}, out: kvOutput{found: true, value: "a", rev: 5}, call: 20, ret: 30}}, porcupine.Ok},
		{"delete of a missing key said deleted", []kvOp{
			{client: 1, in: kvInput{op: opDelete, key: "k"}, out: kvOutput{deleted: true, rev: 3}, call: 0, ret: 10}}, porcupine.Illegal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, path, err := checkLinearizable(tc.ops, 100, []faultRecord{{kind: killLeader, start: 5, end: 15}}, t.TempDir, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if res != tc.want {
				t.Fatalf("checker says %s, want %s", res, tc.want)
			}
			if res == porcupine.Illegal {
				b, err := os.ReadFile(path)
				if err != nil || !strings.Contains(string(b), "kill-leader") {
					t.Fatalf("visualization %s (faults annotated): %v", path, err)
				}
			}
		})
	}
}

func TestWatchChecker(t *testing.T) {
	ops := []kvOp{put(0, "k", "a", 5, 0, 1), put(0, "k", "b", 6, 2, 3), put(0, "j", "c", 8, 4, 5)}
	byRev, issued := committedWrites(ops)
	ev := func(rev uint64, key, value string) watchEvent {
		return watchEvent{rev: rev, modRev: rev, key: key, value: value}
	}
	for _, tc := range []struct {
		name     string
		segments []*segment
		want     string
	}{
		{"complete", []*segment{{from: 4, revs: []uint64{5, 6, 8}, events: []watchEvent{ev(5, "k", "a"), ev(6, "k", "b"), ev(8, "j", "c")}}}, ""},
		{"gap", []*segment{{from: 4, revs: []uint64{5, 8}, events: []watchEvent{ev(5, "k", "a"), ev(8, "j", "c")}}}, "gap"},
		{"duplicate", []*segment{{from: 4, revs: []uint64{5, 5, 6}, events: []watchEvent{ev(5, "k", "a"), ev(5, "k", "a"), ev(6, "k", "b")}}}, "revision 5 after 5"},
		{"wrong value", []*segment{{from: 4, revs: []uint64{5}, events: []watchEvent{ev(5, "k", "b")}}}, "answered at it was"},
		{"wrong mod_revision", []*segment{{from: 4, revs: []uint64{5}, events: []watchEvent{{rev: 5, modRev: 4, key: "k", value: "a"}}}}, "says mod_revision 4"},
		{"never written", []*segment{{from: 4, revs: []uint64{7}, events: []watchEvent{ev(7, "k", "z")}}}, "no write issued"},
		{"a restart may skip", []*segment{{from: 4, revs: []uint64{5}, events: []watchEvent{ev(5, "k", "a")}},
			{from: 7, revs: []uint64{8}, events: []watchEvent{ev(8, "j", "c")}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &watcher{segments: tc.segments}
			problems := strings.Join(w.check(byRev, issued), "\n")
			if (tc.want == "") != (problems == "") || !strings.Contains(problems, tc.want) {
				t.Fatalf("problems %q, want %q", problems, tc.want)
			}
		})
	}
}

func TestAlarmChecker(t *testing.T) {
	now := time.Now()
	l := newAlarmLog(alarmNamespace)
	l.alarms["a/ok"] = &alarmRecord{fireAt: now, setAcked: true, claims: []claim{{sent: now, answered: now.Add(time.Millisecond)}}}
	l.alarms["a/lost"] = &alarmRecord{fireAt: now, setAcked: true}
	l.alarms["a/unanswered"] = &alarmRecord{fireAt: now}
	l.alarms["a/deleted"] = &alarmRecord{fireAt: now, setAcked: true, deleteTried: true, deleteAcked: now}
	l.alarms["a/early"] = &alarmRecord{fireAt: now, setAcked: true, claims: []claim{{sent: now.Add(-time.Second), answered: now.Add(-time.Millisecond)}}}
	l.alarms["a/zombie"] = &alarmRecord{fireAt: now, setAcked: true, deleteTried: true, deleteAcked: now,
		claims: []claim{{sent: now.Add(time.Second), answered: now.Add(2 * time.Second)}}}
	l.alarms["a/redelivered"] = &alarmRecord{fireAt: now, setAcked: true, dropped: 1, claims: []claim{{sent: now, answered: now}, {sent: now, answered: now}}}
	l.alarms["a/expired"] = &alarmRecord{fireAt: now, setAcked: true, dropped: 1, claims: []claim{{sent: now, answered: now}}}
	for key, a := range l.alarms { // deliveries carry what was set...
		a.name = key
		for i := range a.claims {
			a.claims[i].fireAt, a.claims[i].payload = a.fireAt, key
		}
	}
	l.alarms["a/garbled"] = &alarmRecord{name: "a/garbled", fireAt: now, setAcked: true, // ...but this one
		claims: []claim{{sent: now, answered: now, fireAt: now.Add(time.Second), payload: "other"}}}
	f := l.check()
	sort.Strings(f.lost)
	if len(f.lost) != 2 || !strings.HasPrefix(f.lost[0], "a/expired (its lease expired") || f.lost[1] != "a/lost" {
		t.Errorf("lost %q, want a/expired and a/lost", f.lost)
	}
	if len(f.early) != 1 || !strings.HasPrefix(f.early[0], "a/early") {
		t.Errorf("early %v, want a/early", f.early)
	}
	if len(f.wrong) != 1 || !strings.HasPrefix(f.wrong[0], "a/garbled set for") {
		t.Errorf("wrong %v, want a/garbled", f.wrong)
	}
	if len(f.afterDelete) != 1 || !strings.HasPrefix(f.afterDelete[0], "a/zombie") {
		t.Errorf("after delete %v, want a/zombie", f.afterDelete)
	}
	if l.pending() != 2 {
		t.Errorf("pending %d, want 2 (a/lost, a/expired)", l.pending())
	}
}

func TestDurabilityChecker(t *testing.T) {
	ops := []kvOp{put(0, "k", "a", 5, 0, 1), put(0, "j", "b", 6, 2, 3),
		{in: kvInput{op: opDelete, key: "i"}, out: kvOutput{deleted: true, rev: 7}}}
	final := map[string]kvOp{
		"k": get(9, "k", "a", 5, 10, 11), // kept
		"j": get(9, "j", "", 0, 10, 11),  // lost: gone
		"i": get(9, "i", "x", 3, 10, 11), // lost: deleted, back at an older revision
	}
	lost := checkDurability(ops, final)
	if len(lost) != 2 || !strings.HasPrefix(lost[0], "i: deleted at 7") || !strings.HasPrefix(lost[1], "j: b written at 6") {
		t.Fatalf("lost %q, want i and j", lost)
	}
}

func TestRevisionChecker(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []kvOp
		want string
	}{
		{"in order across keys", []kvOp{put(0, "k", "a", 5, 0, 10), put(1, "j", "b", 7, 20, 30), put(2, "i", "c", 6, 5, 25)}, ""},
		{"real time across keys", []kvOp{put(0, "k", "a", 9, 0, 10), put(1, "j", "b", 7, 20, 30)}, "smaller revision"},
		{"one revision, two writes", []kvOp{put(0, "k", "a", 9, 0, 10), put(1, "j", "b", 9, 5, 30)}, "two writes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems := strings.Join(checkRevisions(tc.ops), "\n")
			if (tc.want == "") != (problems == "") || !strings.Contains(problems, tc.want) {
				t.Fatalf("problems %q, want %q", problems, tc.want)
			}
		})
	}
	twice := &watcher{segments: []*segment{{from: 1, events: []watchEvent{{rev: 5, key: "k", value: "a"}}},
		{from: 6, events: []watchEvent{{rev: 8, key: "k", value: "a"}}}}}
	if p := checkAppliedOnce([]*watcher{twice}); len(p) != 1 {
		t.Fatalf("a put applied at two revisions: %q", p)
	}
}

// TestSchedule: a seed gives one schedule, every kind asked for at least
// once, faults in time order; another seed gives another.
func TestSchedule(t *testing.T) {
	kinds, err := parseFaultKinds("")
	if err != nil {
		t.Fatal(err)
	}
	a, b := schedule(42, kinds, 10*time.Minute), schedule(42, kinds, 10*time.Minute)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("one seed gave two schedules")
	}
	if reflect.DeepEqual(a, schedule(43, kinds, 10*time.Minute)) {
		t.Fatal("seeds 42 and 43 gave the same schedule")
	}
	seen := map[faultKind]bool{}
	for i, f := range a {
		seen[f.kind] = true
		if i > 0 && f.at <= a[i-1].at {
			t.Fatalf("fault %d at %s, after fault %d at %s", i, f.at, i-1, a[i-1].at)
		}
	}
	if len(seen) != int(numFaultKinds) {
		t.Fatalf("%d kinds scheduled, want %d", len(seen), numFaultKinds)
	}
	if only := schedule(1, []faultKind{crashAll}, 0); len(only) != 1 || only[0].kind != crashAll {
		t.Fatalf("short schedule of one kind: %+v", only)
	}
	if _, err := parseFaultKinds("kill-leader,nonsense"); err == nil {
		t.Fatal("an unknown fault name was accepted")
	}
}
