#!/usr/bin/env bash
# The two client generations against one galgo-server build, in one run: galgo-bench speaks
# the 0.8 framing and then the 0.9 one (VSR headers, the batch format), interleaved
# 0.8 0.9 0.8 0.9, each workload on a fresh server and data directory, and prints each
# round's 0.9 / 0.8 ratios (docs/benchmarks.md, "Both client generations").
#
#   scripts/bench-generations.sh [OUT_DIR]
#     OUT_DIR  reports and logs, default bench-reports/generations-<date-time>; the summary
#              is OUT_DIR/summary.txt
#   Environment: ROUNDS (default 3), DATA_DIR (default $TMPDIR or /tmp), PORT (default
#   18190; WebSocket uses PORT+2), SERVER and BENCH (binaries; built in release mode if
#   unset), TARGET_DIR (cargo's target directory for that build, default target).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
OUT=${1:-bench-reports/generations-$(date +%Y%m%d-%H%M%S)}
ROUNDS=${ROUNDS:-3}
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

stop_server() {
  kill "$SERVER_PID"
  wait "$SERVER_PID" || true
  rm -rf "$DATA"
  SERVER_PID=
}
SERVER_PID=
trap '[[ -n "$SERVER_PID" ]] && stop_server' EXIT

# bench NAME PROTOCOL ARGS...: one galgo-bench run on a fresh server.
bench() {
  local name=$1 protocol=$2
  shift 2
  start_galgo "$SERVER" "$OUT/$name.server.log" --set "tcp.address=127.0.0.1:$PORT" \
    --set "websocket.address=127.0.0.1:$((PORT + 2))"
  if ! "$BENCH" --server "iggy://iggy:iggy@127.0.0.1:$PORT" --protocol "$protocol" \
    --durability fsync=interval --baseline-secs 0 --label "$name" --json "$OUT/$name.json" \
    "$@" >"$OUT/$name.txt" 2>&1; then
    say "[$name] FAILED: $(tail -1 "$OUT/$name.txt")"
  fi
  stop_server
}

# round N PROTOCOL: the three workloads in one generation.
round() {
  local n=$1 protocol=$2 tag=${2/./}
  bench "producer-$tag-$n" "$protocol" --mode pinned-producer --producers 2 \
    --message-size 1000 --messages-per-batch 1000 --batches 500 --warmup-secs 1
  bench "consumer-$tag-$n" "$protocol" --mode pinned-consumer --consumers 2 \
    --message-size 1000 --messages-per-batch 1000 --batches 500 --warmup-secs 1
  bench "small-messages-$tag-$n" "$protocol" --mode pinned-producer --producers 1 \
    --message-size 100 --messages-per-batch 1 --batches 20000 --warmup-secs 1
}

say "server $SERVER, bench $BENCH; $(nproc) cores; fsync=interval; $ROUNDS rounds, 0.8 0.9"
for n in $(seq "$ROUNDS"); do
  round "$n" 0.8
  round "$n" 0.9
done

# Per round: MB/s of the producers and consumers, p50 and p99 of one-message requests, and
# the 0.9 / 0.8 ratios.
python3 - "$OUT" "$ROUNDS" <<'EOF' | tee -a "$SUMMARY"
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def figures(name, group):
    try:
        report = json.load(open(f"{out}/{name}.json"))
    except (OSError, ValueError):
        return None
    return report.get(group)
def p(fig, name):
    return dict(fig["latency"]["percentiles_us"])[name]
print("| round | workload | 0.8 | 0.9 | 0.9 / 0.8 |")
print("|---|---|---|---|---|")
for n in range(1, rounds + 1):
    for workload, group, what in [("producer", "producers", "MB/s"),
                                  ("consumer", "consumers", "MB/s"),
                                  ("small-messages", "producers", "p50"),
                                  ("small-messages", "producers", "p99")]:
        old = figures(f"{workload}-08-{n}", group)
        new = figures(f"{workload}-09-{n}", group)
        if not old or not new:
            print(f"| {n} | {workload} {what} | failed | failed | |")
            continue
        if what == "MB/s":
            a, b = old["megabytes_per_sec"], new["megabytes_per_sec"]
            print(f"| {n} | {workload} MB/s | {a:.0f} | {b:.0f} | {b / a:.2f} |")
        else:
            a, b = p(old, what), p(new, what)
            print(f"| {n} | one 100 B message per request, {what} µs | {a:.0f} | {b:.0f} | {b / a:.2f} |")
EOF
say "reports in $OUT"
