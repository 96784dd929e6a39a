package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/cairndb/cairn/client"
	"github.com/spf13/cobra"
)

// benchOptions are the flags of `cairn bench`.
type benchOptions struct {
	workload      string
	rest          bool
	clients       int
	connections   int
	duration      time.Duration
	ops           int64
	warmup        time.Duration
	keys          int
	valueSize     int
	objects       int
	namespace     string
	target        string
	output        string
	rate          float64
	consistency   string
	readRatio     float64
	preload       bool
	watchers      int
	alarmLead     time.Duration
	webhookListen string
	cpuProfile    string
	cpuPIDs       []int
}

var benchWorkloads = []string{"put", "get", "txn", "mixed", "alarm", "watch"}

func newBenchCmd() *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench WORKLOAD",
		Short: "Measure throughput and latency under load",
		Long: `Run a workload against a cluster and print throughput, latency percentiles
(p50, p90, p99, p99.9, max) and errors by code. WORKLOAD is one of:

  put     write random keys of the key space
  get     read random keys (--consistency); the keys are written first
  txn     compare-and-set: each client reads its own key's revision, then
          writes it in a transaction that compares mod_revision
  mixed   gets and puts, --read-ratio of them gets
  alarm   set alarms due --alarm-lead after now, delivered by webhook to a
          receiver the bench runs (--webhook-listen); reports the delay from
          due time to delivery. It sets --namespace's alarm delivery to it.
  watch   --watchers streams watch one object while the clients write to it;
          reports the delay from write to delivery at each watcher

Clients run closed-loop (one request at a time each), or open-loop at
--rate operations per second in all, latency then counted from when each
request was due. Over gRPC (the Go client) the clients share --connections
connections; with --rest each client keeps its own HTTP/1.1 keep-alive
connection to the REST gateway and sends JSON. An overloaded cluster's
ResourceExhausted answers are counted apart, and the client that got one
pauses for the server's retry hint (10 ms without one, 1 s at most) before
its next operation; the refused one is not retried. Progress shows on stderr when it is a terminal.`,
		Example: `  cairn bench put --clients 64 --duration 10s
  cairn bench get --consistency serializable --target followers --clients 64
  cairn bench mixed --read-ratio 0.9 --rest --output json
  cairn bench watch --watchers 100 --clients 4 --ops 10000
  cairn bench alarm --clients 8 --rate 500 --duration 30s`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.workload = args[0]
			cfg, err := clientConfig(cmd)
			if err != nil {
				return err
			}
			if err := o.validate(cmd); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return runBench(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), o, cfg)
		},
	}
	f := cmd.Flags()
	addConnectionFlags(f)
	f.BoolVar(&o.rest, "rest", false, "measure the REST gateway (HTTP/JSON) instead of gRPC")
	f.IntVar(&o.clients, "clients", 1, "concurrent clients")
	f.IntVar(&o.connections, "connections", 0, "gRPC connections the clients share (0: one per target node); over REST each client has its own")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long to measure")
	f.Int64Var(&o.ops, "ops", 0, "measure this many operations instead of a duration")
	f.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before measuring")
	f.IntVar(&o.keys, "keys", 10000, "key space: keys are picked uniformly from this many")
	f.IntVar(&o.valueSize, "value-size", 256, "bytes of each value written")
	f.IntVar(&o.objects, "objects", 1, "objects the keys are spread over")
	f.StringVar(&o.namespace, "namespace", "bench", "namespace to work in (created when missing)")
	f.StringVar(&o.target, "target", "leader", "nodes to load: leader, followers or all")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text, or json (one line)")
	f.Float64Var(&o.rate, "rate", 0, "open loop: operations per second in all (0: closed loop)")
	f.StringVar(&o.consistency, "consistency", "linearizable", "reads: linearizable or serializable")
	f.Float64Var(&o.readRatio, "read-ratio", 0.5, "mixed: fraction of operations that are gets")
	f.BoolVar(&o.preload, "preload", true, "get, mixed: write every key once before the run")
	f.IntVar(&o.watchers, "watchers", 10, "watch: watch streams on the written object")
	f.DurationVar(&o.alarmLead, "alarm-lead", 200*time.Millisecond, "alarm: how long after it is set each alarm is due")
	f.StringVar(&o.webhookListen, "webhook-listen", "127.0.0.1:0", "alarm: address of the webhook receiver (the leader must reach it)")
	f.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of the bench itself, while it measures, to this file")
	f.IntSliceVar(&o.cpuPIDs, "cpu-pids", nil, "report the CPU these local processes (the servers) used while measuring (Linux)")
	return cmd
}

// validate checks the flags before anything is sent.
func (o *benchOptions) validate(cmd *cobra.Command) error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if !slices.Contains(benchWorkloads, o.workload) {
		bad("workload %q: use one of %s", o.workload, strings.Join(benchWorkloads, ", "))
	}
	if o.clients < 1 {
		bad("--clients %d: must be at least 1", o.clients)
	}
	if o.connections < 0 {
		bad("--connections %d: must not be negative", o.connections)
	}
	if o.ops < 0 {
		bad("--ops %d: must not be negative", o.ops)
	}
	if o.ops > 0 && cmd.Flags().Changed("duration") {
		bad("--ops and --duration: give one of them")
	}
	if o.ops == 0 && o.duration <= 0 {
		bad("--duration %s: must be positive", o.duration)
	}
	if o.warmup < 0 {
		bad("--warmup %s: must not be negative", o.warmup)
	}
	if o.keys < 1 {
		bad("--keys %d: must be at least 1", o.keys)
	}
	if o.objects < 1 || o.objects > o.keys {
		bad("--objects %d: must be 1 to --keys (%d)", o.objects, o.keys)
	}
	minValue := 1
	if o.workload == "watch" {
		minValue = benchStampLen // the value carries its send time
	}
	if o.valueSize < minValue {
		bad("--value-size %d: must be at least %d for %s", o.valueSize, minValue, o.workload)
	}
	if o.namespace == "" {
		bad("--namespace: must not be empty")
	}
	if !slices.Contains([]string{"leader", "followers", "all"}, o.target) {
		bad("--target %q: use leader, followers or all", o.target)
	}
	if o.output != "text" && o.output != "json" {
		bad("--output %q: use text or json", o.output)
	}
	if o.rate < 0 {
		bad("--rate %g: must not be negative", o.rate)
	}
	if o.consistency != "linearizable" && o.consistency != "serializable" {
		bad("--consistency %q: use linearizable or serializable", o.consistency)
	}
	if o.readRatio < 0 || o.readRatio > 1 {
		bad("--read-ratio %g: must be between 0 and 1", o.readRatio)
	}
	if o.watchers < 1 {
		bad("--watchers %d: must be at least 1", o.watchers)
	}
	if o.alarmLead <= 0 {
		bad("--alarm-lead %s: must be positive", o.alarmLead)
	}
	for _, pid := range o.cpuPIDs {
		if _, err := pidCPU(pid); err != nil {
			bad("--cpu-pids: %v", err)
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// runBench connects, prepares the workload, warms up, measures and
// reports.
func runBench(ctx context.Context, stdout, stderr io.Writer, o benchOptions, cfg client.Config) error {
	r := &benchRun{o: o, cfg: cfg, progress: newBenchProgress(stderr)}
	defer r.close()
	defer r.progress.clear() // before an error is printed, too
	if err := r.connect(ctx); err != nil {
		return err
	}
	if err := r.work.prepare(ctx, r); err != nil {
		return err
	}
	if o.warmup > 0 {
		r.runPhase(ctx, "warm-up", o.warmup, 0, false)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
	}
	res := r.measure(ctx)
	pprof.StopCPUProfile()
	r.work.finish(ctx, r, res)
	r.progress.clear()
	if o.output == "json" {
		return printer{w: stdout}.value(res)
	}
	res.writeText(stdout)
	return nil
}
