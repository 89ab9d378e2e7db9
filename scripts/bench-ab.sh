#!/usr/bin/env bash
# Before/after: two galgo-server binaries measured in one run, interleaved A B A B, with the
# standard suite's producer and small-messages workloads (docs/benchmarks.md), each on a fresh
# server and data directory, each with its own same-run loopback baseline. Both are driven by
# the same galgo-bench. Compare the ratios to the baseline, not the absolute figures.
#
#   scripts/bench-ab.sh SERVER_A SERVER_B [OUT_DIR]
#     SERVER_A, SERVER_B  galgo-server binaries (e.g. a release build of main, and one of an
#                         older commit built in a worktree of its own)
#     OUT_DIR             reports and logs, default bench-reports/ab-<date-time>; the summary
#                         is OUT_DIR/summary.txt
#   Environment: ROUNDS (default 3), DATA_DIR (the servers' data directories, default $TMPDIR
#   or /tmp), PORT (TCP port, default 18190; WebSocket uses PORT+2), BENCH (a galgo-bench
#   binary; built in release mode if unset), TARGET_DIR (cargo's target directory for that
#   build, default target).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
if [[ $# -lt 2 ]]; then
  echo "usage: scripts/bench-ab.sh SERVER_A SERVER_B [OUT_DIR]" >&2
  exit 2
fi
SERVER_A=$1
SERVER_B=$2
OUT=${3:-bench-reports/ab-$(date +%Y%m%d-%H%M%S)}
ROUNDS=${ROUNDS:-3}
DATA_DIR=${DATA_DIR:-${TMPDIR:-/tmp}}
PORT=${PORT:-18190}
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
if [[ -z "${BENCH:-}" ]]; then
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked -p galgo-bench
  BENCH=$TARGET_DIR/release/galgo-bench
fi
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

# start_server BINARY NAME: a fresh server on a fresh data directory; sets SERVER_PID and
# DATA. Waits for its ready line (bounded: 15 s).
start_server() {
  local binary=$1 name=$2
  start_galgo "$binary" "$OUT/$name.server.log" --set "tcp.address=127.0.0.1:$PORT" \
    --set "websocket.address=127.0.0.1:$((PORT + 2))"
}


# A server left running (an interrupted run) would share the port with the next one.
SERVER_PID=
trap '[[ -n "$SERVER_PID" ]] && stop_galgo' EXIT

# bench NAME ARGS...: one galgo-bench run; prints its summary and ratio lines, or that it
# failed (the run goes on: a failed workload is a finding, not a reason to lose the others).
bench() {
  local name=$1
  shift
  if ! "$BENCH" --server "iggy://iggy:iggy@127.0.0.1:$PORT" --durability fsync=interval \
    --label "$name" --json "$OUT/$name.json" "$@" >"$OUT/$name.txt" 2>&1; then
    say "[$name] FAILED: $(grep -m1 ERROR "$OUT/$name.txt" || tail -1 "$OUT/$name.txt")"
  fi
  grep -E "^(producers|baseline)|^ratio .*(MB/s|p50|p99 )" "$OUT/$name.txt" |
    sed "s/^/[$name] /" | tee -a "$SUMMARY"
}

# one BINARY SIDE ROUND: the two workloads on one fresh server.
one() {
  local binary=$1 side=$2 round=$3
  start_server "$binary" "$side$round"
  bench "producer-$side$round" --mode pinned-producer --producers 2 --partitions 1 \
    --message-size 1000 --messages-per-batch 1000 --batches 500 --warmup-secs 1
  bench "small-messages-$side$round" --mode pinned-producer --producers 2 --partitions 1 \
    --message-size 100 --messages-per-batch 1 --batches 20000 --warmup-secs 1
  stop_galgo
}

say "A = $SERVER_A"
say "B = $SERVER_B"
say "$(nproc) cores; defaults of each server (fsync=interval); $ROUNDS rounds, A B A B"
for round in $(seq "$ROUNDS"); do
  one "$SERVER_A" a "$round"
  one "$SERVER_B" b "$round"
done
say "reports in $OUT"
