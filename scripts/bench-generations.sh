#!/usr/bin/env bash
# The two client generations against one galgo-server build, in one run: galgo-bench speaks
# the 0.8 framing and the 0.9 one (VSR headers, the batch format) against the same server:
# each workload on a fresh server and data directory, first one warm-up run (not counted:
# the first run on a new server differs from the later ones in either generation), then
# ROUNDS pairs 0.8 0.9 0.8 0.9 …, and prints each pair's 0.9 / 0.8 ratio and their median
# (docs/benchmarks.md, "Both client generations").
#
#   scripts/bench-generations.sh [OUT_DIR]
#     OUT_DIR  reports and logs, default bench-reports/generations-<date-time>; the summary
#              is OUT_DIR/summary.txt
#   Environment: ROUNDS (default 3), WORKLOADS (default "producer consumer small-messages",
#   any of them), DATA_DIR (default $TMPDIR or /tmp), PORT (default 18190; WebSocket uses
#   PORT+2), SERVER and BENCH (binaries; built in release mode if unset), TARGET_DIR (cargo's
#   target directory for that build, default target).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
OUT=${1:-bench-reports/generations-$(date +%Y%m%d-%H%M%S)}
ROUNDS=${ROUNDS:-3}
WORKLOADS=${WORKLOADS:-producer consumer small-messages}
DATA_DIR=${DATA_DIR:-${TMPDIR:-/tmp}}
PORT=${PORT:-18190}
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
if [[ -z "${SERVER:-}" || -z "${BENCH:-}" ]]; then
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked -p galgo-server -p galgo-bench
  SERVER=${SERVER:-$TARGET_DIR/release/galgo-server}
  BENCH=${BENCH:-$TARGET_DIR/release/galgo-bench}
fi
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

SERVER_PID=
trap '[[ -n "$SERVER_PID" ]] && stop_galgo' EXIT

# bench NAME PROTOCOL ARGS...: one galgo-bench run (its own streams, deleted afterwards).
bench() {
  local name=$1 protocol=$2
  shift 2
  if ! "$BENCH" --server "iggy://iggy:iggy@127.0.0.1:$PORT" --protocol "$protocol" \
    --durability fsync=interval --baseline-secs 0 --label "$name" --json "$OUT/$name.json" \
    "$@" >"$OUT/$name.txt" 2>&1; then
    say "[$name] FAILED: $(tail -1 "$OUT/$name.txt")"
  fi
}

# workload NAME ARGS...: a fresh server, a warm-up run, then ROUNDS pairs (unless WORKLOADS
# leaves NAME out).
workload() {
  local name=$1
  shift
  [[ " $WORKLOADS " == *" $name "* ]] || return 0
  start_galgo "$SERVER" "$OUT/$name.server.log" --set "tcp.address=127.0.0.1:$PORT" \
    --set "websocket.address=127.0.0.1:$((PORT + 2))"
  bench "$name-warmup" 0.8 "$@"
  for n in $(seq "$ROUNDS"); do
    bench "$name-08-$n" 0.8 "$@"
    bench "$name-09-$n" 0.9 "$@"
  done
  stop_galgo
}

say "server $SERVER, bench $BENCH; $(nproc) cores; fsync=interval; $ROUNDS pairs per workload"
workload producer --mode pinned-producer --producers 2 \
  --message-size 1000 --messages-per-batch 1000 --batches 500 --warmup-secs 1
workload consumer --mode pinned-consumer --consumers 2 \
  --message-size 1000 --messages-per-batch 1000 --batches 500 --warmup-secs 1
workload small-messages --mode pinned-producer --producers 1 \
  --message-size 100 --messages-per-batch 1 --batches 20000 --warmup-secs 1

# Per round: MB/s of the producers and consumers, p50 and p99 of one-message requests, and
# the 0.9 / 0.8 ratios.
python3 - "$OUT" "$ROUNDS" "$WORKLOADS" <<'EOF' | tee -a "$SUMMARY"
import json, statistics, sys
out, rounds, chosen = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def figure(name, group, what):
    try:
        fig = json.load(open(f"{out}/{name}.json"))[group]
    except (OSError, ValueError, KeyError):
        return None
    if what == "MB/s":
        return fig["megabytes_per_sec"]
    return dict(fig["latency"]["percentiles_us"])[what]
print("| workload | 0.8, each pair | 0.9, each pair | 0.9 / 0.8, each pair | median ratio |")
print("|---|---|---|---|---|")
for workload, group, what, label in [
        ("producer", "producers", "MB/s", "producer MB/s (2 × 1000 × 1 KB batches)"),
        ("consumer", "consumers", "MB/s", "consumer MB/s (reading that back)"),
        ("small-messages", "producers", "p50", "one 100 B message per request, p50 µs"),
        ("small-messages", "producers", "p99", "one 100 B message per request, p99 µs")]:
    if workload not in chosen:
        continue
    pairs = [(figure(f"{workload}-08-{n}", group, what), figure(f"{workload}-09-{n}", group, what))
             for n in range(1, rounds + 1)]
    pairs = [(a, b) for a, b in pairs if a and b]
    if not pairs:
        print(f"| {label} | failed | failed | | |")
        continue
    ratios = [b / a for a, b in pairs]
    fmt = lambda xs: " / ".join(f"{x:.0f}" for x in xs)
    print(f"| {label} | {fmt(a for a, _ in pairs)} | {fmt(b for _, b in pairs)} | "
          + " / ".join(f"{r:.2f}" for r in ratios) + f" | **{statistics.median(ratios):.2f}** |")
EOF
say "reports in $OUT"
