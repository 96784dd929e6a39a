package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBench runs every workload of `cairn bench`, over gRPC and over
// REST, against a real cluster (`cairn dev`, authentication on: the token
// comes from CAIRN_TOKEN) with a small --ops, and checks its JSON line:
// every requested operation counted, no errors, percentiles in order,
// and for alarm and watch every delivery received. Its stderr is not a
// terminal, so the output must be the JSON line alone (no progress).
func TestBench(t *testing.T) {
	dir, env := startDevForCLI(t)
	runs := []struct {
		workload string
		args     []string
	}{
		{"put", []string{"--objects", "3", "--rate", "2000", "--cpu-pids", strconv.Itoa(os.Getpid())}},
		{"get", []string{"--consistency", "serializable", "--target", "followers"}},
		{"txn", []string{"--objects", "2"}},
		{"mixed", []string{"--read-ratio", "0.7", "--target", "all", "--connections", "4"}},
		{"alarm", []string{"--alarm-lead", "50ms"}},
		{"watch", []string{"--watchers", "3"}},
	}
	const ops = 120
	for _, rest := range []bool{false, true} {
		for _, r := range runs {
			args := append([]string{"bench", r.workload, "--ops", fmt.Sprint(ops), "--clients", "4", "--keys", "50",
				"--warmup", "100ms", "--output", "json"}, r.args...)
			if rest {
				args = append(args, "--rest")
			}
			name := strings.Join(args[1:], " ")
			out, err := runCairn(t, dir, env, args...)
			if err != nil {
				t.Fatalf("cairn %s: %v\n%s", name, err, out)
			}
			var res benchResult
			if err := json.Unmarshal([]byte(out), &res); err != nil || strings.Count(out, "\n") != 1 {
				t.Fatalf("cairn %s: output is not one JSON line (%v):\n%s", name, err, out)
			}
			if res.Ops != ops || res.Errors != 0 || res.Count != ops {
				t.Errorf("cairn %s: %d ops (histogram %d), %d errors %v; want %d ops, no errors", name, res.Ops, res.Count, res.Errors, res.ErrorsByCode, ops)
			}
			if wantTarget := map[bool]string{false: "cairn-grpc", true: "cairn-rest"}[rest]; res.Target != wantTarget || res.Mode != r.workload {
				t.Errorf("cairn %s: target %q mode %q", name, res.Target, res.Mode)
			}
			checkOrdered(t, name, res.latencySummary)
			if r.workload == "put" && len(res.PIDCPUPct) != 1 {
				t.Errorf("cairn %s: pid_cpu_pct %v, want the one --cpu-pids process", name, res.PIDCPUPct)
			}
			for op, s := range res.ByOp {
				checkOrdered(t, name+" "+op, s)
			}
			if r.workload == "mixed" && res.ByOp["get"].Count+res.ByOp["put"].Count != ops {
				t.Errorf("cairn %s: by_op counts %d + %d, want %d", name, res.ByOp["get"].Count, res.ByOp["put"].Count, ops)
			}
			if r.workload == "alarm" || r.workload == "watch" {
				d := res.Delivery
				if d == nil || d.Expected == 0 || d.Count != d.Expected {
					t.Fatalf("cairn %s: delivery %+v, want every expected delivery", name, d)
				}
				checkOrdered(t, name+" delivery", d.latencySummary)
			}
		}
	}

	// The text form names the workload and prints the percentiles.
	out, err := runCairn(t, dir, env, "bench", "put", "--ops", "20", "--warmup", "0s")
	if err != nil {
		t.Fatalf("cairn bench put: %v\n%s", err, out)
	}
	for _, want := range []string{"cairn bench put", "p99.9", "errors", "bench CPU"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

// TestBenchOverload loads a node whose bound on calls in flight is 2 with
// 32 clients: its ResourceExhausted answers (with a retry hint) are
// counted as overload and not retried, over gRPC and over REST (HTTP 429).
func TestBenchOverload(t *testing.T) {
	ports := freePorts(t, 3)
	n := newE2ENode(t, "n1", ports[0], ports[1], ports[2], "--bootstrap", "--max-inflight-requests", "2")
	n.start(t)
	waitAllReady(t, 30*time.Second, n)
	waitMembers(t, n.base(), n) // the bench reaches the leader by its published address
	for _, rest := range []string{"--rest=false", "--rest=true"} {
		out, err := runCairn(t, n.dir, nil, "bench", "put", "--endpoints", n.grpc, "--clients", "32", "--ops", "300",
			"--warmup", "0s", "-o", "json", rest)
		if err != nil {
			t.Fatalf("cairn bench put %s: %v\n%s", rest, err, out)
		}
		var res benchResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("not one JSON line: %v\n%s", err, out)
		}
		exhausted := res.ErrorsByCode["ResourceExhausted"]
		if res.Ops+res.Errors != 300 || exhausted == 0 || res.Overloaded != exhausted || res.Errors != exhausted {
			t.Errorf("%s: ops %d, errors %v, overloaded %d; want 300 in all, the errors ResourceExhausted, counted as overload",
				rest, res.Ops, res.ErrorsByCode, res.Overloaded)
		}
	}
}

func checkOrdered(t *testing.T, name string, s latencySummary) {
	t.Helper()
	if !(0 < s.P50 && s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.P999 && s.P999 <= s.Max && s.Mean <= s.Max) {
		t.Errorf("%s: percentiles out of order: %+v", name, s)
	}
}

// TestBenchFlagErrors checks that `cairn bench` refuses bad flags with
// one message naming the flag, before it connects to anything.
func TestBenchFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"scan"}, `workload "scan"`},
		{[]string{"put", "--clients", "0"}, "--clients"},
		{[]string{"put", "--connections", "-1"}, "--connections"},
		{[]string{"put", "--ops", "10", "--duration", "5s"}, "--ops and --duration"},
		{[]string{"put", "--duration", "0s"}, "--duration"},
		{[]string{"put", "--keys", "10", "--objects", "11"}, "--objects"},
		{[]string{"put", "--value-size", "0"}, "--value-size"},
		{[]string{"watch", "--value-size", "10"}, "--value-size 10: must be at least 19"},
		{[]string{"get", "--consistency", "eventual"}, "--consistency"},
		{[]string{"mixed", "--read-ratio", "1.5"}, "--read-ratio"},
		{[]string{"put", "--target", "primary"}, "--target"},
		{[]string{"put", "--output", "yaml"}, "--output"},
		{[]string{"put", "--rate", "-5"}, "--rate"},
		{[]string{"put", "--namespace", ""}, "--namespace"},
		{[]string{"watch", "--watchers", "0"}, "--watchers"},
		{[]string{"alarm", "--alarm-lead", "0s"}, "--alarm-lead"},
		{[]string{"put", "--cpu-pids", "0"}, "--cpu-pids: process 0"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		// Nothing listens on port 1: a bench that got past its flags fails
		// differently.
		args := append([]string{"bench", "--endpoints", "127.0.0.1:1"}, c.args...)
		out, err := runCairn(t, dir, nil, args...)
		var exit *exec.ExitError
		if err == nil || !errorsAs(err, &exit) || exit.ExitCode() == 0 {
			t.Errorf("cairn %v: exit %v, want a failure\n%s", args, err, out)
			continue
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "cairn: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("cairn %v: error output %q, want one line starting with \"cairn: \" naming %q", args, out, c.want)
		}
	}
}
