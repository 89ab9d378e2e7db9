#!/usr/bin/env bash
# Runs galgo-bench's standard suite against a running server of Iggy's protocol (galgo or
# Apache Iggy) and writes a JSON and an HTML report per workload.
#
#   scripts/bench.sh [SERVER] [OUT_DIR]
#     SERVER   connection string, default iggy://iggy:iggy@127.0.0.1:8090
#     OUT_DIR  where the reports go, default bench-reports/<date-time>
#   Environment: DURABILITY (the server's durability mode, recorded in the reports, e.g.
#   "fsync=interval"), BENCH_SCALE (multiplies the amount of data, default 1), PIN=1 to pin
#   each actor to a core, BENCH (a galgo-bench binary; built in release mode if unset).
#
# Each report holds the same-run baseline (raw loopback request/response with the same sizes,
# no broker) and the broker's ratios to it; on a shared or small machine compare the ratios,
# not the absolute figures.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER=${1:-iggy://iggy:iggy@127.0.0.1:8090}
OUT=${2:-bench-reports/$(date +%Y%m%d-%H%M%S)}
DURABILITY=${DURABILITY:-unknown}
SCALE=${BENCH_SCALE:-1}
if [[ -z "${BENCH:-}" ]]; then
  cargo build --release --locked -p galgo-bench
  BENCH=${CARGO_TARGET_DIR:-target}/release/galgo-bench
fi
mkdir -p "$OUT"
PIN_FLAG=()
[[ "${PIN:-0}" == 1 ]] && PIN_FLAG=(--pin)

run() {
  local name=$1
  shift
  echo "== $name"
  "$BENCH" --server "$SERVER" --durability "$DURABILITY" --label "$name" "${PIN_FLAG[@]}" \
    --json "$OUT/$name.json" --html "$OUT/$name.html" "$@"
}

# Large batches: 1000 messages of 1000 bytes per request.
run producer --mode pinned-producer --producers 2 --partitions 1 \
  --message-size 1000 --messages-per-batch 1000 --batches $((500 * SCALE)) --warmup-secs 1
run consumer --mode pinned-consumer --consumers 2 --partitions 1 \
  --message-size 1000 --messages-per-batch 1000 --batches $((500 * SCALE)) --warmup-secs 1
run producer-and-consumer --mode pinned-producer-and-consumer --producers 2 --consumers 2 \
  --partitions 1 --message-size 1000 --messages-per-batch 1000 --batches $((500 * SCALE))
# Small messages, one per request: the per-request cost.
run small-messages --mode pinned-producer --producers 2 --partitions 1 \
  --message-size 100 --messages-per-batch 1 --batches $((20000 * SCALE)) --warmup-secs 1
# A fixed rate, latency from the intended send time to receipt by a consumer.
run end-to-end-fixed-rate --mode end-to-end --producers 2 --consumers 2 --partitions 1 \
  --message-size 1000 --messages-per-batch 10 --rate-msgs-per-sec 10000 \
  --duration-secs $((10 * SCALE))
echo "reports in $OUT"
