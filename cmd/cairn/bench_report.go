package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// benchResult is what `cairn bench` reports: with --output json one line
// whose field names follow the shared load generator's (ops, errors,
// ops_per_s, p50_ms ... max_ms, mean_ms), so scripts compare the two.
type benchResult struct {
	Time            string           `json:"time"`
	Tool            string           `json:"tool"`
	Target          string           `json:"target"` // cairn-grpc or cairn-rest
	Endpoints       string           `json:"endpoints"`
	Nodes           string           `json:"nodes"` // --target
	Mode            string           `json:"mode"`  // the workload
	ReadConsistency string           `json:"read_consistency,omitempty"`
	Clients         int              `json:"clients"`
	Conns           int              `json:"conns"`
	ValueSize       int              `json:"value_size"`
	Keys            int              `json:"keys"`
	Objects         int              `json:"objects"`
	Rate            float64          `json:"rate,omitempty"`
	WarmupS         float64          `json:"warmup_s"`
	DurationS       float64          `json:"duration_s"`
	Ops             int64            `json:"ops"`    // successful operations
	Errors          int64            `json:"errors"` // failed ones, all codes
	ErrorsByCode    map[string]int64 `json:"errors_by_code"`
	Overloaded      int64            `json:"overloaded"` // of which ResourceExhausted
	OpsPerS         float64          `json:"ops_per_s"`
	latencySummary
	ByOp     map[string]latencySummary `json:"by_op,omitempty"`
	Delivery *benchDelivery            `json:"delivery,omitempty"`
	// ClientCPUS is the CPU time the bench itself used while measuring;
	// ClientCPUPct the same in percent of one core.
	ClientCPUS   float64 `json:"client_cpu_s"`
	ClientCPUPct float64 `json:"client_cpu_pct"`
	// PIDCPUPct is, with --cpu-pids, the CPU each of those processes (the
	// servers, on this machine) used while measuring, in percent of one
	// core, as the shared load generator reports it; PIDCPUS their sum in
	// seconds.
	PIDCPUPct map[string]float64 `json:"pid_cpu_pct,omitempty"`
	PIDCPUS   float64            `json:"pid_cpu_s,omitempty"`
}

// benchDelivery is, for alarm and watch, the delay from due time (alarm)
// or write (watch) to delivery.
type benchDelivery struct {
	// Expected is how many deliveries the measured operations should
	// cause; the summary's count is how many arrived (within the wait).
	Expected uint64 `json:"expected"`
	// Redelivered counts deliveries of an alarm again (after a failure).
	Redelivered uint64 `json:"redelivered,omitempty"`
	latencySummary
}

func (res *benchResult) writeText(out io.Writer) {
	loop := "closed loop"
	if res.Rate > 0 {
		loop = fmt.Sprintf("open loop at %g ops/s", res.Rate)
	}
	via := fmt.Sprintf("%d gRPC connection(s)", res.Conns)
	if res.Target == "cairn-rest" {
		via = "REST, a keep-alive connection each,"
	}
	fmt.Fprintf(out, "cairn bench %s: %d clients, %s to %s (%s), %s\n",
		res.Mode, res.Clients, via, res.Nodes, res.Endpoints, loop)
	extra := ""
	if res.ReadConsistency != "" {
		extra = ", " + res.ReadConsistency + " reads"
	}
	fmt.Fprintf(out, "%d-byte values, %d keys in %d object(s)%s; measured %.2f s after %g s of warm-up\n\n",
		res.ValueSize, res.Keys, res.Objects, extra, res.DurationS, res.WarmupS)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ops\t%d\t(%.1f/s)\n", res.Ops, res.OpsPerS)
	fmt.Fprintln(tw, "latency ms\tp50\tp90\tp99\tp99.9\tmax\tmean")
	row := func(name string, s latencySummary) {
		fmt.Fprintf(tw, "  %s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\n", name, s.P50, s.P90, s.P99, s.P999, s.Max, s.Mean)
	}
	row(res.Mode, res.latencySummary)
	for _, name := range slices.Sorted(maps.Keys(res.ByOp)) {
		row(name, res.ByOp[name])
	}
	if d := res.Delivery; d != nil {
		row(fmt.Sprintf("delivery (%d of %d)", d.Count, d.Expected), d.latencySummary)
	}
	errs := fmt.Sprint(res.Errors)
	if res.Errors > 0 {
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(res.ErrorsByCode)) {
			parts = append(parts, fmt.Sprintf("%s %d", code, res.ErrorsByCode[code]))
		}
		errs += " (" + strings.Join(parts, ", ") + ")"
	}
	fmt.Fprintf(tw, "errors\t%s\n", errs)
	if res.Overloaded > 0 {
		fmt.Fprintf(tw, "overloaded\t%d\t(ResourceExhausted: the cluster shed load)\n", res.Overloaded)
	}
	fmt.Fprintf(tw, "bench CPU\t%.2f s\t(%.0f%% of one core)\n", res.ClientCPUS, res.ClientCPUPct)
	if res.PIDCPUPct != nil && res.Ops > 0 {
		fmt.Fprintf(tw, "--cpu-pids CPU\t%.2f s\t(%.0f µs per operation)\n", res.PIDCPUS, 1e6*res.PIDCPUS/float64(res.Ops))
	}
	_ = tw.Flush()
}
