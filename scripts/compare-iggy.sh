#!/usr/bin/env bash
# Apache Iggy 0.8 and galgo side by side, both driven by the same client: Iggy's own iggy-bench
# (built from Iggy's source, outside this repository). Six workloads, each on a freshly started
# server with a fresh data directory and the defaults of each server, Iggy then galgo for each
# workload (A B A B), ROUNDS rounds:
#   1. pinned producer, 1 GB: 2 producers × 500 batches × 1000 messages × 1000 B (the standard
#      suite's producer, docs/benchmarks.md)
#   2. pinned consumer reading back what 1 wrote (same server instance, right after 1)
#   3. one 100 B message per request: 2 producers × 20000 batches of 1 message
#   4. WebSocket producer, 1 GB (as 1, over WebSocket)
#   5. end-to-end producing consumer, 1 GB: 2 actors each sending a batch, then polling it back
#   6. pinned producer, 10 GB: 2 × 5000 × 1000 × 1000 B
# Prints a markdown table (iggy-bench's MB/s, galgo / Iggy, latencies) and the servers' RSS,
# also written to OUT_DIR/summary.md; iggy-bench's JSON reports are kept in OUT_DIR.
#
#   scripts/compare-iggy.sh IGGY_SERVER IGGY_BENCH OUT_DIR
#     IGGY_SERVER  Apache Iggy 0.8's iggy-server (e.g. /work/iggy-0.8.0/target/release/iggy-server)
#     IGGY_BENCH   its iggy-bench (same build)
#     OUT_DIR      summary, JSON reports, logs
#   Environment: ROUNDS (default 3), DATA_DIR (where the servers' data directories go, removed
#   after each server; default /var/tmp), SMALL=1 (every workload 50 times smaller: a smoke
#   test) or SHRINK=N (divide every batch count by N), WARMUP (iggy-bench --warmup-time of the
#   workloads that produce, default 1s; the consumer runs without, so it reads exactly what the
#   producer wrote), BENCH_TIMEOUT (seconds per iggy-bench run, default 1800), GALGO_SERVER
#   (default target/release/galgo-server), IGGY_CONFIG (a TOML file for Iggy; default: the
#   configuration embedded in its binary). galgo-bench is not used: iggy-bench drives both.
#
# Both servers listen on their default ports (TCP 127.0.0.1:8090, WebSocket 127.0.0.1:8092),
# so only one runs at a time; the script waits for the ports to be free before each start.
# About 3–4 minutes a round on the 2-vCPU development VM. Needs about 11 GB free in DATA_DIR
# (the 10 GB workload). Iggy's root user is iggy/iggy through IGGY_ROOT_USERNAME /
# IGGY_ROOT_PASSWORD (without them Iggy 0.8 generates a password); galgo's default root user
# is iggy/iggy.
set -euo pipefail
if [[ $# -ne 3 ]]; then
  echo "usage: scripts/compare-iggy.sh IGGY_SERVER IGGY_BENCH OUT_DIR" >&2
  exit 2
fi
IGGY_SERVER=$(readlink -f "$1")
IGGY_BENCH=$(readlink -f "$2")
mkdir -p "$3"
OUT=$(cd "$3" && pwd)
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
GALGO_SERVER=${GALGO_SERVER:-target/release/galgo-server}
ROUNDS=${ROUNDS:-3}
DATA_DIR=${DATA_DIR:-/var/tmp}
SHRINK=${SHRINK:-1}
[[ "${SMALL:-0}" == 1 ]] && SHRINK=50
WARMUP=${WARMUP:-1s}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
TCP_PORT=8090
WS_PORT=8092
for binary in "$IGGY_SERVER" "$IGGY_BENCH" "$GALGO_SERVER"; do
  if [[ ! -x "$binary" ]]; then
    echo "no executable $binary (galgo: cargo build --release --locked -p galgo-server)" >&2
    exit 2
  fi
done
mkdir -p "$OUT/raw"
LOG=$OUT/progress.log
: >"$LOG"
: >"$OUT/commands.txt"
: >"$OUT/rss.tsv"
rm -f "$OUT"/*.failed
log() { echo "$*" | tee -a "$LOG"; }

# batches N: N divided by SHRINK, at least 1.
batches() {
  local n=$(($1 / SHRINK))
  echo $((n > 0 ? n : 1))
}
P1G=$(batches 500)
P10G=$(batches 5000)
SMALL_BATCHES=$(batches 20000)
avail_kb=$(df -Pk "$DATA_DIR" | awk 'NR == 2 {print $4}')
if ((avail_kb < 11 * 1024 * 1024 / SHRINK)); then
  log "warning: $DATA_DIR has $((avail_kb / 1024)) MB free; the 10 GB workload needs about $((11 * 1024 / SHRINK)) MB"
fi

# The servers. SERVER_PID, SERVER_SIDE (iggy or galgo) and DATA are the running one's.
SERVER_PID=
SERVER_SIDE=
SERVER_NAME=
BENCH_PID=
trap '[[ -n "$BENCH_PID" ]] && stop_pid "$BENCH_PID" 10; [[ -n "$SERVER_PID" ]] && stop_server' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_iggy LOG: iggy-server with its defaults on a fresh data directory under $DATA_DIR;
# waits (bounded: 60 s) until every one of its shards listens on TCP and WebSocket (each shard
# binds the ports itself, one after the other, and logs it).
start_iggy() {
  local log=$1
  DATA=$(mktemp -d "$DATA_DIR/iggy-bench-data.XXXXXX")
  # IGGY_CONFIG_PATH names a file that does not exist unless IGGY_CONFIG is set: Iggy then uses
  # the configuration embedded in its binary, whatever the working directory holds.
  IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy IGGY_SYSTEM_PATH=$DATA \
    IGGY_CONFIG_PATH=${IGGY_CONFIG:-$DATA/embedded-defaults.toml} "$IGGY_SERVER" >"$log" 2>&1 &
  SERVER_PID=$!
  local shards= deadline=$((SECONDS + 60))
  while :; do
    [[ -z "$shards" ]] && shards=$(grep -o 'Starting [0-9]* shard(s)' "$log" | grep -o '[0-9]*' || true)
    if [[ -n "$shards" ]] && (($(grep -c 'Iggy TCP server has started' "$log") >= shards &&
      $(grep -c 'WebSocket Server has started' "$log") >= shards)) &&
      port_open "$TCP_PORT" && port_open "$WS_PORT"; then
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null || ((SECONDS >= deadline)); then
      echo "iggy-server did not start (every shard listening on $TCP_PORT and $WS_PORT); see $log" >&2
      exit 1
    fi
    sleep 0.05
  done
}

# start_server SIDE NAME: a fresh server (SIDE iggy or galgo) on a fresh data directory, its
# output in OUT/NAME.server.log; records its RSS once it serves.
start_server() {
  SERVER_SIDE=$1
  SERVER_NAME=$2
  local port
  for port in "$TCP_PORT" "$WS_PORT"; do
    if ! wait_port_free "$port" 30; then
      echo "port $port still in use 30 s after the last server stopped" >&2
      exit 1
    fi
  done
  if [[ $SERVER_SIDE == iggy ]]; then
    start_iggy "$OUT/$SERVER_NAME.server.log"
  else
    start_galgo "$GALGO_SERVER" "$OUT/$SERVER_NAME.server.log"
  fi
  printf '%s\t%s\tstart\t%s\n' "$SERVER_SIDE" "$SERVER_NAME" "$(rss_kb "$SERVER_PID")" >>"$OUT/rss.tsv"
}

# stop_server: records the running server's RSS, stops it (Iggy: SIGTERM, SIGKILL after 60 s),
# removes its data directory and flushes the page cache's dirty pages (so that one server's
# writeback does not fall into the next one's run).
stop_server() {
  printf '%s\t%s\tend\t%s\n' "$SERVER_SIDE" "$SERVER_NAME" "$(rss_kb "$SERVER_PID")" >>"$OUT/rss.tsv"
  if [[ $SERVER_SIDE == iggy ]]; then
    stop_pid "$SERVER_PID" 60
    rm -rf "$DATA"
    SERVER_PID=
  else
    stop_galgo
  fi
  sync
}

# bench RUN KIND ARGS...: one iggy-bench run (ARGS: its arguments up to and with the
# transport's); its output in OUT/RUN.txt, its JSON report copied to OUT/RUN.json (the whole
# output directory stays in OUT/raw/RUN). A failure is recorded in OUT/RUN.failed and the
# run goes on: a failed workload is a finding, not a reason to lose the others.
bench() {
  local run=$1 kind=$2
  shift 2
  local cmd=("$IGGY_BENCH" "$@" output --output-dir "$OUT/raw/$run" --identifier "$run")
  printf '%s\t%s\n' "$run" "$(printf '%q ' "${cmd[@]}")" >>"$OUT/commands.txt"
  rm -rf "$OUT/raw/$run" "$OUT/$run.json"
  local deadline=$((SECONDS + BENCH_TIMEOUT)) why= rc=0
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    why="not run: the server had exited (see $SERVER_NAME.server.log)"
    : >"$OUT/$run.txt"
  else
    # In the background (without this script's traps), watched: stopped when it outlasts
    # BENCH_TIMEOUT or the server exits (iggy-bench would otherwise try to reconnect for ever).
    (
      trap - EXIT INT TERM
      exec "${cmd[@]}"
    ) >"$OUT/$run.txt" 2>&1 &
    BENCH_PID=$!
  fi
  while [[ -n "$BENCH_PID" ]] && kill -0 "$BENCH_PID" 2>/dev/null; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      why="the server exited during the run (see $SERVER_NAME.server.log)"
    elif ((SECONDS >= deadline)); then
      why="timed out after $BENCH_TIMEOUT s"
    fi
    [[ -n "$why" ]] && break
    sleep 0.2
  done
  if [[ -n "$BENCH_PID" && -n "$why" ]]; then
    stop_pid "$BENCH_PID" 10
  elif [[ -n "$BENCH_PID" ]]; then
    wait "$BENCH_PID" || rc=$?
  fi
  BENCH_PID=
  local report
  report=$(find "$OUT/raw/$run" -name report.json 2>/dev/null | head -1 || true)
  [[ -n "$report" ]] && cp "$report" "$OUT/$run.json"
  if [[ -z "$why" ]] && { ((rc != 0)) || [[ -z "$report" ]]; }; then
    why="exit $rc: $(sed 's/\x1b\[[0-9;]*m//g' "$OUT/$run.txt" |
      grep -m1 -E 'ERROR|panicked|error:' || tail -1 "$OUT/$run.txt")"
  fi
  if [[ -z "$why" ]] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
    why="the server exited (see $SERVER_NAME.server.log)"
  fi
  if [[ -n "$why" ]]; then
    echo "$why" >"$OUT/$run.failed"
    log "[$run] FAILED: $why"
  fi
  if [[ -f "$OUT/$run.json" ]]; then
    log "[$run] $(jq -r --arg kind "$kind" '.group_metrics[] | select(.summary.kind == $kind)
      | .summary | "\(.total_throughput_megabytes_per_second) MB/s, p50 \(.average_p50_latency_ms) ms, p99 \(.average_p99_latency_ms) ms, max \(.max_latency_ms) ms"' "$OUT/$run.json")"
  fi
}

# The workloads. iggy-bench's global options (sizes, batches, warm-up) come before the
# benchmark kind, the kind's (streams, actors) before the transport, the transport's (address)
# before `output`. --message-batches counts per actor.
TCP=(tcp --server-address "127.0.0.1:$TCP_PORT")
WS=(web-socket --server-address "127.0.0.1:$WS_PORT")
BIG=(--message-size 1000 --messages-per-batch 1000)
# workload NAME SIDE ROUND: workload NAME on a fresh server of SIDE.
workload() {
  local name=$1 side=$2 round=$3
  local run=$name-$side-$round
  start_server "$side" "$run"
  case $name in
  producer-consumer)
    bench "producer-$side-$round" producers "${BIG[@]}" --message-batches "$P1G" \
      --warmup-time "$WARMUP" pinned-producer --streams 2 --producers 2 "${TCP[@]}"
    bench "consumer-$side-$round" consumers "${BIG[@]}" --message-batches "$P1G" \
      --warmup-time 0s pinned-consumer --streams 2 --consumers 2 "${TCP[@]}"
    ;;
  small)
    bench "$run" producers --message-size 100 --messages-per-batch 1 \
      --message-batches "$SMALL_BATCHES" --warmup-time "$WARMUP" \
      pinned-producer --streams 2 --producers 2 "${TCP[@]}"
    ;;
  ws-producer)
    bench "$run" producers "${BIG[@]}" --message-batches "$P1G" --warmup-time "$WARMUP" \
      pinned-producer --streams 2 --producers 2 "${WS[@]}"
    ;;
  e2e)
    bench "$run" producing_consumers "${BIG[@]}" --message-batches "$P1G" \
      --warmup-time "$WARMUP" end-to-end-producing-consumer --streams 2 --producing-consumers 2 \
      "${TCP[@]}"
    ;;
  producer-10g)
    bench "$run" producers "${BIG[@]}" --message-batches "$P10G" --warmup-time "$WARMUP" \
      pinned-producer --streams 2 --producers 2 "${TCP[@]}"
    ;;
  esac
  stop_server
}

# name, iggy-bench group of the figures, label: read by the summary below.
cat >"$OUT/workloads.tsv" <<EOF
producer	producers	1. pinned producer, 2 × $P1G × 1000 × 1000 B
consumer	consumers	2. pinned consumer, reading 1 back
small	producers	3. one 100 B message per request, 2 × $SMALL_BATCHES
ws-producer	producers	4. WebSocket producer, 2 × $P1G × 1000 × 1000 B
e2e	producing_consumers	5. end-to-end producing consumer, 2 × $P1G × 1000 × 1000 B (MB/s: sent + received)
producer-10g	producers	6. pinned producer, 2 × $P10G × 1000 × 1000 B
EOF

GIT_REV=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates 2>/dev/null || echo "+changes")
cat >"$OUT/header.md" <<EOF
# Apache Iggy and galgo, driven by the same iggy-bench

$(date -u +%FT%TZ), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -sr), data in $DATA_DIR ($(df -PT "$DATA_DIR" | awk 'NR == 2 {print $2}')); $ROUNDS rounds, each workload on a fresh server and data directory, Iggy then galgo; defaults of each server; shrink ÷$SHRINK; warm-up $WARMUP (not the consumer).

- Iggy: \`$IGGY_SERVER\` ($("$IGGY_SERVER" --version 2>/dev/null | head -1 || echo "version unknown"))
- iggy-bench: \`$IGGY_BENCH\` ($("$IGGY_BENCH" --version 2>/dev/null | tail -1 || echo "version unknown"))
- galgo: \`$GALGO_SERVER\` ($("$GALGO_SERVER" --version 2>/dev/null | head -1 || echo "version unknown"); the repository is at $GIT_REV)
- Iggy started as: \`IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy IGGY_SYSTEM_PATH=<fresh dir> IGGY_CONFIG_PATH=${IGGY_CONFIG:-<absent file: embedded defaults>} $IGGY_SERVER\`
- galgo started as: \`$GALGO_SERVER --data-dir <fresh dir>\`
EOF

log "$(date -u +%FT%TZ) Iggy $IGGY_SERVER, iggy-bench $IGGY_BENCH, galgo $GALGO_SERVER; $ROUNDS rounds; shrink ÷$SHRINK"
for round in $(seq "$ROUNDS"); do
  for name in producer-consumer small ws-producer e2e producer-10g; do
    for side in iggy galgo; do
      log "== round $round: $name, $side"
      workload "$name" "$side" "$round"
    done
  done
done

# The summary: one row per workload and round, the medians over the rounds, the RSS, the
# commands.
python3 - "$OUT" "$ROUNDS" <<'EOF' | tee "$OUT/summary.md"
import csv, json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
workloads = [line.rstrip("\n").split("\t") for line in open(f"{out}/workloads.tsv")]

def summary(run, kind):
    try:
        report = json.load(open(f"{out}/{run}.json"))
    except (OSError, ValueError):
        return None
    for group in report.get("group_metrics", []):
        if group["summary"]["kind"] == kind:
            return group["summary"]
    return None

def failed(run):
    try:
        return open(f"{out}/{run}.failed").read().strip()
    except OSError:
        return None

notes = {}
def note(run):
    """The footnote mark of run's failure ("" if it did not fail)."""
    why = failed(run)
    if why is None and os.path.exists(f"{out}/{run}.json"):
        return ""
    notes.setdefault(run, why or "no report")
    return f" [{list(notes).index(run) + 1}]"

def cell(s, fields):
    return " / ".join(f"{s[f]:.3g}" for f in fields) if s else "–"

print(open(f"{out}/header.md").read())
print("""All figures are iggy-bench's own (its report.json, group summary). MB/s: its total
throughput, the sum over the actors of each one's mean of 10 ms samples (MB = 10^6 B).
Latencies in ms, per request (batch): p50 … p99.99 are the mean over the actors of each
actor's percentile. **max is not the slowest request**: iggy-bench takes it from its latency
time series (10 ms buckets, moving average of 20), so it can be below p99; its JSON keeps no
per-request maximum (p99.99 of the full 10 GB run, 5,000 requests per actor, is halfway
between each actor's two slowest). Tails need many requests: at full size the 10 GB and
one-message workloads have 10,000 and 40,000.
""")
print("| workload | round | Iggy MB/s | galgo MB/s | galgo / Iggy | Iggy p50 / p99 | galgo p50 / p99 "
      "| Iggy p99.9 / p99.99 / max | galgo p99.9 / p99.99 / max |")
print("|---|---|---|---|---|---|---|---|---|")
MBS = "total_throughput_megabytes_per_second"
def mbs(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"
ratios = {}
for name, kind, label in workloads:
    for r in range(1, rounds + 1):
        runs = (f"{name}-iggy-{r}", f"{name}-galgo-{r}")
        pair = [summary(run, kind) for run in runs]
        row = [label, str(r)]
        row += [(mbs(s[MBS]) if s else "failed") + note(run) for run, s in zip(runs, pair)]
        iggy, galgo = pair
        if iggy and galgo and iggy[MBS] > 0:
            ratio = galgo[MBS] / iggy[MBS]
            ratios.setdefault(name, []).append((iggy[MBS], galgo[MBS], ratio))
            row.append(f"**{ratio:.2f}**")
        else:
            row.append("")
        row += [cell(s, ["average_p50_latency_ms", "average_p99_latency_ms"]) for s in pair]
        row += [cell(s, ["average_p999_latency_ms", "average_p9999_latency_ms", "max_latency_ms"])
                for s in pair]
        print("| " + " | ".join(row) + " |")

print("\n## Over the rounds\n")
print("| workload | Iggy MB/s, median | galgo MB/s, median | galgo / Iggy, each round | median |")
print("|---|---|---|---|---|")
for name, kind, label in workloads:
    got = ratios.get(name)
    if not got:
        print(f"| {label} | | | no pair | |")
        continue
    print(f"| {label} | {mbs(statistics.median(g[0] for g in got))} | "
          f"{mbs(statistics.median(g[1] for g in got))} | "
          + " / ".join(f"{g[2]:.2f}" for g in got)
          + f" | **{statistics.median(g[2] for g in got):.2f}** |")

print("\n## Resident memory (VmRSS)\n")
print("Of the server instance of the 10 GB workload: right after it serves, and after the run.\n")
rss = {}
for side, run, phase, kb in csv.reader(open(f"{out}/rss.tsv"), delimiter="\t"):
    rss[(run, phase)] = kb
def mb(run, phase):
    kb = rss.get((run, phase), "?")
    return f"{int(kb) / 1024:.0f} MiB" if kb.isdigit() else kb
print("| round | Iggy after start | Iggy after 10 GB | galgo after start | galgo after 10 GB |")
print("|---|---|---|---|---|")
for r in range(1, rounds + 1):
    print(f"| {r} | {mb(f'producer-10g-iggy-{r}', 'start')} | {mb(f'producer-10g-iggy-{r}', 'end')} "
          f"| {mb(f'producer-10g-galgo-{r}', 'start')} | {mb(f'producer-10g-galgo-{r}', 'end')} |")
print("\nEvery server instance's RSS at its start and end: rss.tsv.")

if notes:
    print("\n## Failures\n")
    for i, (run, why) in enumerate(notes.items(), 1):
        print(f"{i}. {run}: {why}")

print("\n## Commands (round 1; the other rounds differ in the output directory only)\n")
print("```")
for line in open(f"{out}/commands.txt"):
    run, cmd = line.rstrip("\n").split("\t", 1)
    if run.endswith("-1"):
        print(f"# {run}\n{cmd}")
print("```")
print(f"\nReports: {out}/<workload>-<server>-<round>.json (iggy-bench's report.json), .txt (its output), raw/ (its output directories), *.server.log.")
EOF
