#!/usr/bin/env bash
# Does scraping /metrics cost the data path anything? The standard suite's producer workload
# on a fresh server per run, interleaved without and with a scraper fetching /metrics once a
# second (as Prometheus would, at a higher rate than its usual 15 s), the same galgo-bench
# driving both, each run with its own same-run loopback baseline.
#
#   scripts/bench-scrape.sh [OUT_DIR]
#     OUT_DIR  reports and logs, default bench-reports/scrape-<date-time>; the summary is
#              OUT_DIR/summary.txt
#   Environment: ROUNDS (default 3), DATA_DIR (default $TMPDIR or /tmp), PORT (TCP port,
#   default 18390; WebSocket PORT+2, HTTP PORT+1), TARGET_DIR (default target), SKIP_BUILD=1
#   to use the release binaries as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
OUT=${1:-bench-reports/scrape-$(date +%Y%m%d-%H%M%S)}
ROUNDS=${ROUNDS:-3}
DATA_DIR=${DATA_DIR:-${TMPDIR:-/tmp}}
PORT=${PORT:-18390}
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked -p galgo-server -p galgo-bench
fi
SERVER=$TARGET_DIR/release/galgo-server
BENCH=$TARGET_DIR/release/galgo-bench
HTTP=127.0.0.1:$((PORT + 1))
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

SERVER_PID=
SCRAPER_PID=
cleanup() {
  [[ -n "$SCRAPER_PID" ]] && kill "$SCRAPER_PID" 2>/dev/null || true
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

start_server() {
  start_galgo "$SERVER" "$OUT/$1.server.log" --set "tcp.address=127.0.0.1:$PORT" \
    --set "websocket.address=127.0.0.1:$((PORT + 2))" --set "http.address=$HTTP"
}


# The scraper: one GET /metrics a second until killed; counts what it fetched.
scrape_every_second() {
  local count=0
  while true; do
    if curl -sf "http://$HTTP/metrics" -o /dev/null; then count=$((count + 1)); fi
    echo "$count" >"$OUT/$1.scrapes"
    sleep 1
  done
}

run() {
  local name=$1 scraper=$2
  start_server "$name"
  if [[ $scraper == 1 ]]; then
    scrape_every_second "$name" &
    SCRAPER_PID=$!
  fi
  "$BENCH" --server "iggy://iggy:iggy@127.0.0.1:$PORT" --durability fsync=interval \
    --label "$name" --json "$OUT/$name.json" --mode pinned-producer --producers 2 \
    --partitions 1 --message-size 1000 --messages-per-batch 1000 --batches 500 \
    --warmup-secs 1 >"$OUT/$name.txt" 2>&1 || say "[$name] FAILED"
  if [[ $scraper == 1 ]]; then
    kill "$SCRAPER_PID"
    wait "$SCRAPER_PID" 2>/dev/null || true
    SCRAPER_PID=
    say "[$name] scrapes: $(cat "$OUT/$name.scrapes" 2>/dev/null || echo 0)"
  fi
  grep -E "^(producers|baseline)|^ratio .*(MB/s|p50|p99 )" "$OUT/$name.txt" |
    sed "s/^/[$name] /" | tee -a "$SUMMARY"
  stop_galgo
}

say "$(nproc) cores; defaults (fsync=interval); $ROUNDS rounds, without and with a 1 Hz scraper"
for round in $(seq "$ROUNDS"); do
  run "quiet-$round" 0
  run "scraped-$round" 1
done
say "reports in $OUT"
