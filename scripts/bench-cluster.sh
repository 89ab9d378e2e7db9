#!/usr/bin/env bash
# A three-node loopback cluster against one node, in one run (docs/benchmarks.md, "Cluster"):
# galgo-bench's producer and consumer, and consumer groups polling with auto-commit (each
# poll's offset goes through the partition's leader on a cluster), with ack = "majority" and
# ack = "leader", each round
# on fresh data directories, in the order single, majority, leader. Prints MB/s and
# p50 / p99 / p99.9 per round and their ratios to the single node of the same round.
#
#   scripts/bench-cluster.sh [OUT_DIR]
#     OUT_DIR  reports and logs, default bench-reports/cluster-<date-time>; the summary is
#              OUT_DIR/summary.txt
#   Environment: ROUNDS (default 3), DATA_DIR (default $TMPDIR or /tmp), PORT (the single
#   node's, default 18300), BASE_PORT (the cluster's, default 18400; see scripts/cluster.sh),
#   FSYNC (default interval), SERVER and BENCH (binaries; built in release mode if unset),
#   TARGET_DIR (cargo's target directory for that build, default target).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
OUT=${1:-bench-reports/cluster-$(date +%Y%m%d-%H%M%S)}
ROUNDS=${ROUNDS:-3}
DATA_DIR=${DATA_DIR:-${TMPDIR:-/tmp}}
PORT=${PORT:-18300}
export BASE_PORT=${BASE_PORT:-18400}
export FSYNC=${FSYNC:-interval}
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
if [[ -z "${SERVER:-}" || -z "${BENCH:-}" ]]; then
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked -p galgo-server -p galgo-bench
  SERVER=${SERVER:-$TARGET_DIR/release/galgo-server}
  BENCH=${BENCH:-$TARGET_DIR/release/galgo-bench}
fi
export SERVER
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
export CLUSTER_DIR=$OUT/cluster

SERVER_PID=
cleanup() {
  [[ -n "$SERVER_PID" ]] && stop_galgo
  scripts/cluster.sh clean >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Two producers on two streams of three partitions each, 1 KB messages in batches of 100,
# then two consumers reading that back; then a consumer group per stream (streams of their
# own, filled first) whose two members poll with auto-commit.
WORKLOAD=(--producers 2 --consumers 2 --streams 2 --partitions 3 --message-size 1000
  --messages-per-batch 100 --batches 1000 --warmup-secs 0 --baseline-secs 0
  --durability "fsync=$FSYNC")

# bench NAME PORT: the producer and consumer runs against the node at PORT.
bench() {
  local name=$1 port=$2 mode
  for mode in pinned-producer pinned-consumer balanced-consumer-group; do
    local prefix=$name-
    [[ $mode == balanced-consumer-group ]] && prefix=$name-g-
    if ! "$BENCH" --server "iggy://iggy:iggy@127.0.0.1:$port" --mode "$mode" "${WORKLOAD[@]}" \
      --stream-prefix "$prefix" --label "$name-$mode" --json "$OUT/$name-$mode.json" \
      >"$OUT/$name-$mode.txt" 2>&1; then
      say "[$name $mode] FAILED: $(tail -1 "$OUT/$name-$mode.txt")"
    fi
  done
}

# cluster NAME ACK: a fresh cluster with that ack mode; the benchmarks through node 1.
cluster() {
  local name=$1
  ACK=$2 scripts/cluster.sh up >"$OUT/$name.up.txt"
  bench "$name" $((BASE_PORT + 10))
  scripts/cluster.sh clean >/dev/null
}

say "server $SERVER, bench $BENCH; $(nproc) cores; fsync=$FSYNC; $ROUNDS rounds"
for n in $(seq "$ROUNDS"); do
  start_galgo "$SERVER" "$OUT/single-$n.server.log" --set "tcp.address=127.0.0.1:$PORT" \
    --set "websocket.address=127.0.0.1:$((PORT + 2))" --set "http.address=127.0.0.1:$((PORT + 3))" \
    --set "shards.count=1" --set "storage.fsync=$FSYNC"
  bench "single-$n" "$PORT"
  stop_galgo
  cluster "majority-$n" majority
  cluster "leader-$n" leader
done

python3 - "$OUT" "$ROUNDS" <<'EOF' | tee -a "$SUMMARY"
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def figures(name, mode, group):
    try:
        fig = json.load(open(f"{out}/{name}-{mode}.json"))[group]
    except (OSError, ValueError, KeyError):
        return None
    p = dict(fig["latency"]["percentiles_us"])
    return fig["megabytes_per_sec"], p["p50"], p["p99"], p["p99.9"]
print("| round | workload | single: MB/s, p50 / p99 / p99.9 µs | majority | leader | MB/s ratio majority / leader |")
print("|---|---|---|---|---|---|")
for n in range(1, rounds + 1):
    for mode, group in [("pinned-producer", "producers"), ("pinned-consumer", "consumers"),
                        ("balanced-consumer-group", "consumers")]:
        row = [figures(f"{setup}-{n}", mode, group) for setup in ("single", "majority", "leader")]
        show = lambda f: "failed" if f is None else f"{f[0]:.0f}, {f[1]:.0f} / {f[2]:.0f} / {f[3]:.0f}"
        ratio = lambda f: "" if f is None or row[0] is None else f"{f[0] / row[0][0]:.2f}"
        print(f"| {n} | {mode} | {show(row[0])} | {show(row[1])} | {show(row[2])} | "
              f"{ratio(row[1])} / {ratio(row[2])} |")
EOF
say "reports in $OUT"
