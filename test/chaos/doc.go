// Package chaos runs real cairn clusters under faults and checks what
// their clients saw. It holds only tests (go test ./test/chaos).
//
// # Fault injection
//
// TestMain builds the cairn binary once. Each run starts a cluster of
// `cairn serve` processes, every node on its own loopback IP (127.S.0.N),
// behind two TCP proxies written here: one in front of its Raft port,
// which its peers dial (a node dials from its own IP, so the proxy knows
// which peer a connection comes from), and one in front of its gRPC port,
// which the clients dial. Nodes snapshot every 256 entries and keep 64
// after a snapshot, so compaction happens throughout a run; about 1 MiB of
// ballast values, rewritten all along, makes snapshots take a while to
// write and install.
//
// Faults, at times drawn from the seed, one after another, each held for
// one to four seconds and then healed: kill -9 of a follower, the leader
// or any node, then a restart; SIGSTOP … SIGCONT (for 5 to 8 s, longer
// than the clients' timeout); the leader partitioned
// from its peers; a minority split from the majority (and, half the
// time, from the clients); one-way loss (a node mute to its peers, or
// deaf to them; or the leader's answers to clients lost, so that clients
// retry writes that happened); added latency
// on a node's links; leader transfer; a member removed under load and a
// fresh node added; every node killed at once; a node down while the
// others compact their logs past it, so that it must install a snapshot.
// The same seed gives the same schedule (which node a fault hits among
// the followers, say, depends on who leads at the time).
//
// Workloads and what the checkers prove:
//   - 8 clients do gets, puts, deletes and compare-and-set transactions
//     on 8 keys, every write with a request id and retried with it until
//     answered. The history is checked by porcupine against a model of
//     each key (value and mod_revision): the store is linearizable. A
//     violation writes porcupine's visualization (faults annotated) to a
//     file named in the failure.
//   - durability: after the final heal and restart of every node, each
//     key holds its last acknowledged write or a newer one.
//   - alarms: a setter sets alarms due within seconds and deletes some, in
//     a pull namespace, where two workers claim and ack them (one claim in
//     ten they leave unacked, as a crashed worker would), and in a webhook
//     namespace, whose deliveries a local server receives (failing one in
//     ten). Every alarm set and not deleted is delivered at least once,
//     across crashes, and again after a delivery that was not acked, with
//     the fire_at and payload it was set with; none
//     arrives before its fire_at; no claim sent after a delete was answered
//     delivers the deleted alarm; every webhook body is signed.
//   - watches: two watchers follow the object through failovers. Their
//     revisions strictly increase (no duplicate); every acknowledged write
//     in the span a watcher covered arrives at its revision with its value
//     (no gap); every event is a write some client issued; no put is seen
//     at two revisions (a write retried with its request id applied once).
//   - revisions: no two answered writes share one, and a write answered
//     before another was invoked has the smaller (real-time order across
//     keys, which the per-key check cannot see).
//   - replicas: after the run every member reaches the same applied index
//     with the same state hash.
//   - liveness: after each fault is healed every member is ready again
//     within a minute; otherwise the stuck members dump their goroutines
//     (SIGQUIT) into a directory the failure names, with every member's
//     log and view of the cluster, are restarted, and the run goes on.
//
// Every run prints one line: seed, operations (and the slowest), faults
// by kind, anomalies and acknowledged writes lost.
//
// Short mode (go test ./...) runs a three-node and a five-node cluster in
// parallel that between them inject each kind of fault once, in about a
// minute. Long mode, for soaks:
//
//	CAIRN_CHAOS_DURATION=30m CAIRN_CHAOS_SEED=42 CAIRN_CHAOS_NODES=5 \
//	CAIRN_CHAOS_FAULTS=kill-leader,split,pause \
//	go test -run TestChaos -timeout 0 -v ./test/chaos
//
// CAIRN_CHAOS_SEED reproduces a run's schedule (the seed is in the
// summary line); CAIRN_CHAOS_FAULTS limits the kinds (names as in the
// summary line; all by default); CAIRN_CHAOS_NODES is the cluster size
// of a long run (5 by default).
package chaos
