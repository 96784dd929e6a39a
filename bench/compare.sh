#!/usr/bin/env bash
# compare.sh: cairn against etcd on this machine, in one run.
#
# Starts a 3-node cairn cluster (`cairn serve` processes, fsync on, default
# settings) and a 3-member etcd cluster (Debian's etcd-server, default
# settings), both on loopback with their data in the same work directory,
# then runs, N times and interleaved (each case against each system in
# turn, the order alternating between repetitions), with 256-byte values
# over 10,000 keys:
#
#   put with 1, 16, 64 and 256 clients; linearizable and serializable get
#   with 64 clients
#
# for cairn gRPC (`cairn bench`) vs etcd gRPC (the shared load generator,
# -target etcd) and cairn REST (`cairn bench --rest`) vs etcd's JSON gateway
# (the load generator, -target http). Both tools load the leader. It prints
# a markdown table of medians over the repetitions with ratios to etcd and
# the CPU the three servers used per operation (the machine is shared: CPU
# per operation moves less with the neighbours' load than throughput does),
# and keeps every run's JSON line in OUTDIR/results.jsonl.
#
# Usage: bench/compare.sh -l LOADGEN [-n REPS] [-d DURATION] [-w WARMUP] [-f FILL] [-m MODE] [-g TAGS]
#                         [-o OUTDIR] [-p PORT]
#        bench/compare.sh -t OUTDIR/results.jsonl   (print the tables of an earlier run)
#   -l  the shared load generator: a built binary, or its Go source directory
#       (built here); also env LOADGEN
#   -n  repetitions (default 5); -d measured duration per run (default 10s)
#   -w  warm-up per run (default 1s)
#   -f  first write to both systems side by side for this long (32 clients
#       each, over gRPC, the put cases' keys and values), so that the runs
#       measure clusters in their steady state; more than cairn's request
#       window (10m) makes every write also remove an expired request record,
#       as it does in a cluster that has been running (default: none)
#   -m  only the cases of this mode: put or get (default: both)
#   -g  build cairn with these Go build tags; benchceiling builds nodes that
#       acknowledge writes without applying them (raftnode/ceiling.go), to
#       measure what the path around the state machine allows: only its put
#       cases mean anything (its reads find no keys)
#   -o  where results and the clusters' data and logs go (default: a new
#       temporary directory, removed at the end unless -o is given)
#   -p  base of the ports used, p+1 to p+43 (default 24100, below Linux's
#       ephemeral ports so that no client socket holds one)
#
# Needs go, curl and jq; installs etcd-server with apt-get when etcd is
# missing. Only the processes it started are stopped, by PID, on exit.
set -euo pipefail

# table FILE: the markdown tables of a results file (medians per case).
table() {
  jq -rs '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def f: if . >= 100 then (. | round | tostring) else ((. * 100 | round) / 100 | tostring) end;
  def ratio(a; b): if b > 0 then ((a / b * 100 | round) / 100 | tostring) + "×" else "-" end;
  def cell(rs; sys; proto; k): [rs[] | select(.system == sys and .proto == proto) | .[k]] | median;
  def cpu_per_op(rs; sys; proto):
    [rs[] | select(.system == sys and .proto == proto and .ops_per_s > 0)
     | ([.pid_cpu_pct[]] | add) / 100 / .ops_per_s * 1e6] | median;
  group_by(.case) as $groups
  | ["put, 1 client", "put, 16 clients", "put, 64 clients", "put, 256 clients",
     "linearizable get, 64 clients", "serializable get, 64 clients"] as $order
  | (["grpc", "cairn gRPC", "etcd gRPC"], ["rest", "cairn REST", "etcd JSON gateway"]) as [$p, $cn, $en]
  | "| workload | \($cn) ops/s | \($en) ops/s | ratio | \($cn) p50 / p99 ms | \($en) p50 / p99 ms | p50 ratio | p99 ratio | server CPU µs/op cairn / etcd | errors cairn / etcd |",
    "|---|---|---|---|---|---|---|---|---|---|",
    ($order[] as $case
     | [$groups[] | select(.[0].case == $case)][0] as $rs
     | select($rs != null)
     | cell($rs; "cairn"; $p; "ops_per_s") as $co | cell($rs; "etcd"; $p; "ops_per_s") as $eo
     | cell($rs; "cairn"; $p; "p50_ms") as $c50 | cell($rs; "etcd"; $p; "p50_ms") as $e50
     | cell($rs; "cairn"; $p; "p99_ms") as $c99 | cell($rs; "etcd"; $p; "p99_ms") as $e99
     | ([$rs[] | select(.system == "cairn" and .proto == $p) | .errors] | add) as $ce
     | ([$rs[] | select(.system == "etcd" and .proto == $p) | .errors] | add) as $ee
     | "| \($case) | \($co | f) | \($eo | f) | \(ratio($co; $eo)) | \($c50 | f) / \($c99 | f) | \($e50 | f) / \($e99 | f) | \(ratio($c50; $e50)) | \(ratio($c99; $e99)) | \(cpu_per_op($rs; "cairn"; $p) | round) / \(cpu_per_op($rs; "etcd"; $p) | round) | \($ce) / \($ee) |"),
    ""
' "$1"
}

REPS=5 DURATION=10s WARMUP=1s FILL="" MODE="" TAGS="" OUTDIR="" PORT=24100 TABLE_ONLY="" LOADGEN=${LOADGEN:-}
while getopts "l:n:d:w:f:m:g:o:p:t:h" opt; do
  case $opt in
    l) LOADGEN=$OPTARG ;;
    n) REPS=$OPTARG ;;
    d) DURATION=$OPTARG ;;
    w) WARMUP=$OPTARG ;;
    f) FILL=$OPTARG ;;
    m) MODE=$OPTARG ;;
    g) TAGS=$OPTARG ;;
    o) OUTDIR=$OPTARG ;;
    p) PORT=$OPTARG ;;
    t) TABLE_ONLY=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
if [[ -n $TABLE_ONLY ]]; then table "$TABLE_ONLY"; exit; fi
[[ -n $LOADGEN ]] || { echo "compare.sh: give the load generator with -l (or LOADGEN)" >&2; exit 2; }
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: -n $REPS: want a positive count" >&2; exit 2; }
[[ $MODE =~ ^(put|get|)$ ]] || { echo "compare.sh: -m $MODE: want put or get" >&2; exit 2; }
for tool in go curl jq; do
  command -v $tool >/dev/null || { echo "compare.sh: $tool is needed" >&2; exit 2; }
done
if ! command -v etcd >/dev/null; then
  echo "compare.sh: installing etcd-server (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >/dev/null
fi

REPO=$(cd "$(dirname "$0")/.." && pwd)
KEEP=1
if [[ -z $OUTDIR ]]; then OUTDIR=$(mktemp -d /tmp/cairn-compare.XXXXXX); KEEP=0; fi
mkdir -p "$OUTDIR"
RESULTS=$OUTDIR/results.jsonl
: >"$RESULTS"
PIDS=()
cleanup() {
  local pid end=$((SECONDS + 15))
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [[ $KEEP == 0 ]]; then rm -rf "$OUTDIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "compare.sh: $*" >&2; }
exec 4>&2 # stderr, for messages from inside commands whose output is hidden


# Ports, from p (-p): cairn REST p+1..3, gRPC p+11..13, Raft p+21..23;
# etcd clients p+31..33, peers p+41..43.
port() { echo $((PORT + $1)); }
for off in 1 2 3 11 12 13 21 22 23 31 32 33 41 42 43; do
  if (exec 3<>/dev/tcp/127.0.0.1/"$(port $off)") 2>/dev/null; then
    echo "compare.sh: port $(port $off) is in use; choose others with -p" >&2; exit 1
  fi
done

log "building cairn and the load generator"
(cd "$REPO" && go build -tags "$TAGS" -o "$OUTDIR/cairn" ./cmd/cairn)
CAIRN=$OUTDIR/cairn
if [[ -d $LOADGEN ]]; then
  (cd "$LOADGEN" && go build -o "$OUTDIR/loadgen" .)
  LG=$OUTDIR/loadgen
else
  LG=$LOADGEN
fi

log "starting cairn (3 x cairn serve) and etcd (3 members) in $OUTDIR"
initial=""
for i in 1 2 3; do initial+="n$i=127.0.0.1:$(port $((20 + i))),"; done
for i in 1 2 3; do
  "$CAIRN" serve --id "n$i" --data-dir "$OUTDIR/cairn-n$i" --insecure-no-auth --log-level warn \
    --raft-addr "127.0.0.1:$(port $((20 + i)))" --grpc-addr "127.0.0.1:$(port $((10 + i)))" \
    --http-addr "127.0.0.1:$(port "$i")" --initial-cluster "${initial%,}" \
    >"$OUTDIR/cairn-n$i.log" 2>&1 &
  PIDS+=($!) && disown
done
etcd_cluster=""
for i in 1 2 3; do etcd_cluster+="e$i=http://127.0.0.1:$(port $((40 + i))),"; done
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$OUTDIR/etcd-e$i" \
    --listen-client-urls "http://127.0.0.1:$(port $((30 + i)))" \
    --advertise-client-urls "http://127.0.0.1:$(port $((30 + i)))" \
    --listen-peer-urls "http://127.0.0.1:$(port $((40 + i)))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(port $((40 + i)))" \
    --initial-cluster "${etcd_cluster%,}" --initial-cluster-token cairn-compare --initial-cluster-state new \
    >"$OUTDIR/etcd-e$i.log" 2>&1 &
  PIDS+=($!) && disown
done

# until SECONDS CMD...: retry CMD every 0.2 s for up to SECONDS.
until_ok() {
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.2
  done
}
# ready PID CHECK...: true once CHECK succeeds; exits the script if the
# process PID has ended (a port taken, a bad flag: its log says).
ready() {
  local pid=$1; shift
  kill -0 "$pid" 2>/dev/null || { log "process $pid ended; see the logs in $OUTDIR" 2>&4; exit 1; }
  "$@"
}
for i in 1 2 3; do
  until_ok 60 ready "${PIDS[$((i - 1))]}" curl -sf "http://127.0.0.1:$(port "$i")/readyz" ||
    { log "cairn n$i not ready; see $OUTDIR/cairn-n$i.log"; exit 1; }
  until_ok 60 ready "${PIDS[$((i + 2))]}" sh -c "curl -sf http://127.0.0.1:$(port $((30 + i)))/health | grep -q true" ||
    { log "etcd e$i not healthy; see $OUTDIR/etcd-e$i.log"; exit 1; }
done
CAIRN_EPS="127.0.0.1:$(port 11),127.0.0.1:$(port 12),127.0.0.1:$(port 13)"
CAIRN_PIDS=$(IFS=,; echo "${PIDS[*]:0:3}")
ETCD_PIDS=$(IFS=,; echo "${PIDS[*]:3:3}")

# etcd_leader prints the client address (host:port) of etcd's leader.
etcd_leader() {
  local i id lead
  for i in 1 2 3; do
    read -r id lead < <(curl -sf -X POST "http://127.0.0.1:$(port $((30 + i)))/v3/maintenance/status" -d '{}' |
      jq -r '[.header.member_id, .leader] | @tsv') || continue
    if [[ $id == "$lead" ]]; then echo "127.0.0.1:$(port $((30 + i)))"; return; fi
  done
  return 1
}
until_ok 30 etcd_leader || { log "etcd has no leader"; exit 1; }

if [[ -n $FILL ]]; then
  log "writing to both side by side for $FILL first (32 clients each), to measure their steady state"
  "$CAIRN" bench put --endpoints "$CAIRN_EPS" --target leader --clients 32 --duration "$FILL" --warmup 0s \
    --keys 10000 --value-size 256 -o json >"$OUTDIR/fill-cairn.json" &
  fill_cairn=$!
  "$LG" -target etcd -endpoints "$(etcd_leader)" -clients 32 -mode put -prefill false -duration "$FILL" -warmup 0s \
    -keys 10000 -value-size 256 -bg-probe 0 >"$OUTDIR/fill-etcd.json" &
  fill_etcd=$!
  wait "$fill_cairn" || { log "writing to cairn for $FILL failed"; exit 1; }
  wait "$fill_etcd" || { log "writing to etcd for $FILL failed"; exit 1; }
  log "filled: cairn $(jq -r .ops_per_s "$OUTDIR/fill-cairn.json") puts/s, etcd $(jq -r .ops_per_s "$OUTDIR/fill-etcd.json") puts/s"
fi

common=(-duration "$DURATION" -warmup "$WARMUP" -keys 10000 -value-size 256 -bg-probe 0 -cpu-pids "$ETCD_PIDS")
log "writing etcd's 10,000 keys once (cairn bench get writes its own before each run)"
"$LG" -target etcd -endpoints "$(etcd_leader)" -clients 64 -mode get -prefill true -ops 1 -warmup 0 -bg-probe 0 >/dev/null

# run SYSTEM PROTO CASE CLIENTS MODE CONSISTENCY: one run, its JSON line
# tagged and appended to the results.
run() {
  local sys=$1 proto=$2 case=$3 clients=$4 mode=$5 cons=$6 line
  if [[ $sys == cairn ]]; then
    local args=(bench "$mode" --endpoints "$CAIRN_EPS" --target leader --clients "$clients" --duration "$DURATION"
      --warmup "$WARMUP" --keys 10000 --value-size 256 --consistency "$cons" --cpu-pids "$CAIRN_PIDS" -o json)
    [[ $proto == rest ]] && args+=(--rest)
    line=$("$CAIRN" "${args[@]}")
  else
    local leader ser=false
    leader=$(etcd_leader)
    [[ $cons == serializable ]] && ser=true
    if [[ $proto == grpc ]]; then
      line=$("$LG" -target etcd -endpoints "$leader" -clients "$clients" -mode "$mode" -read-consistency "$cons" \
        -prefill false "${common[@]}")
    else
      line=$("$LG" -target http -endpoints "$leader" -clients "$clients" -mode "$mode" -prefill false "${common[@]}" \
        -http-put-method POST -http-put-url 'http://{endpoint}/v3/kv/put' \
        -http-put-body '{"key":"{key_b64}","value":"{value_b64}"}' \
        -http-get-method POST -http-get-url 'http://{endpoint}/v3/kv/range' \
        -http-get-body "{\"key\":\"{key_b64}\",\"serializable\":$ser}" -http-found-substring '"kvs"')
    fi
  fi
  jq -c --arg sys "$sys" --arg proto "$proto" --arg case "$case" --arg tags "$TAGS" \
    '. + {system: $sys, proto: $proto, case: $case} + (if $sys == "cairn" and $tags != "" then {build_tags: $tags} else {} end)' \
    <<<"$line" >>"$RESULTS"
  jq -r '"\(.system) \(.proto) \(.case): \(.ops_per_s) ops/s, p50 \(.p50_ms) ms, p99 \(.p99_ms) ms, \(.errors) errors, servers \([.pid_cpu_pct[]] | add | round)% CPU"' \
    <<<"$(tail -n1 "$RESULTS")" >&2
}

log "warming both clusters up (16 clients writing for 3 s each, not recorded)"
"$CAIRN" bench put --endpoints "$CAIRN_EPS" --clients 16 --duration 3s --warmup 0s -o json >/dev/null
"$LG" -target etcd -endpoints "$(etcd_leader)" -clients 16 -mode put -duration 3s -warmup 0s -bg-probe 0 >/dev/null

CASES=("put, 1 client|1|put|linearizable" "put, 16 clients|16|put|linearizable" "put, 64 clients|64|put|linearizable"
  "put, 256 clients|256|put|linearizable" "linearizable get, 64 clients|64|get|linearizable"
  "serializable get, 64 clients|64|get|serializable")
for rep in $(seq "$REPS"); do
  log "repetition $rep of $REPS"
  for c in "${CASES[@]}"; do
    IFS='|' read -r name clients mode cons <<<"$c"
    [[ -z $MODE || $mode == "$MODE" ]] || continue
    for proto in grpc rest; do
      if ((rep % 2)); then order=(cairn etcd); else order=(etcd cairn); fi
      for sys in "${order[@]}"; do run "$sys" "$proto" "$name" "$clients" "$mode" "$cons"; done
    done
  done
done

etcd_version=$(etcd --version | sed -n 1p) # sed reads it all: no SIGPIPE
cat <<EOF

cairn ($("$CAIRN" version | sed -n 1p)${TAGS:+, built with -tags $TAGS}) vs $etcd_version, 3 nodes each on loopback, fsync on,
$(nproc) cores shared by both clusters and the load; 256-byte values, 10,000 keys; medians of
$REPS interleaved runs of $DURATION each (after $WARMUP of warm-up), the leader loaded; ratio = cairn / etcd.

EOF
table "$RESULTS"
if [[ $KEEP == 1 ]]; then log "every run's JSON line: $RESULTS"; fi
