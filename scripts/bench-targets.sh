#!/usr/bin/env bash
# Measures galgo against the performance targets of docs/benchmarks.md ("Where the targets
# stand"), one workload after another, each on a fresh server and data directory, each with
# its same-run reference: galgo-bench's loopback baseline, dd for the disk, TCP for WebSocket.
#
#   scripts/bench-targets.sh [OUT_DIR]
#     OUT_DIR  reports and logs, default bench-reports/targets-<date-time>; the summary is
#              OUT_DIR/summary.txt
#   Environment: RUNS (repetitions of the short workloads, default 3), DATA_DIR (where the
#   servers' data directories and dd's file go; must be on the disk under test, default
#   $TMPDIR or /tmp), TARGET_DIR (cargo's target directory, default target), PORT (TCP port,
#   default 18090; WebSocket uses PORT+2), SKIP_BUILD=1 to use the binaries as they are,
#   SHM_DIR (a tmpfs for the runs without a disk, default /dev/shm; skipped if missing).
#
# Needs about 12 GB free in DATA_DIR (the 10 GB runs) and 1 GB in SHM_DIR. Takes about 12
# minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
OUT=${1:-bench-reports/targets-$(date +%Y%m%d-%H%M%S)}
RUNS=${RUNS:-3}
DATA_DIR=${DATA_DIR:-${TMPDIR:-/tmp}}
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
PORT=${PORT:-18090}
WS_PORT=$((PORT + 2))
SERVER=$TARGET_DIR/release/galgo-server
BENCH=$TARGET_DIR/release/galgo-bench
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked -p galgo-server -p galgo-bench
fi
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

# start_server NAME [--set ...]: a fresh server on a fresh data directory; sets SERVER_PID and
# DATA. Waits for its ready line (bounded).
start_server() {
  local name=$1
  shift
  LOG=$OUT/$name.server.log
  start_galgo "$SERVER" "$LOG" --set "tcp.address=127.0.0.1:$PORT" \
    --set "websocket.address=127.0.0.1:$WS_PORT" "$@"
}

stop_server() {
  say "  server RSS at the end: $(grep VmRSS /proc/"$SERVER_PID"/status | tr -s ' \t' ' ')"
  kill "$SERVER_PID"
  wait "$SERVER_PID" || true
  rm -rf "$DATA"
}

# bench NAME URL DURABILITY ARGS...: one galgo-bench run; prints its summary lines.
bench() {
  local name=$1 url=$2 durability=$3
  shift 3
  "$BENCH" --server "$url" --durability "$durability" --label "$name" \
    --json "$OUT/$name.json" "$@" >"$OUT/$name.txt" 2>&1
  grep -E "^(producers|consumers|baseline)|^ratio .*(MB/s|p50|p99\.9)" "$OUT/$name.txt" |
    sed "s/^/[$name] /" | tee -a "$SUMMARY"
}

dd_rate() {
  local file=$DATA_DIR/galgo-bench-dd.$$
  dd if=/dev/zero of="$file" bs=1M count=1024 "$@" 2>&1 | tail -1
  rm -f "$file"
}

# dd_rate_synced BLOCK COUNT: about 1 GB written with O_DIRECT, each BLOCK-sized write synced
# before the next (O_DSYNC).
dd_rate_synced() {
  local file=$DATA_DIR/galgo-bench-dd.$$
  dd if=/dev/zero of="$file" bs="$1" count="$2" oflag=direct,dsync 2>&1 | tail -1
  rm -f "$file"
}

# dd_read_rate: writes 1 GiB with O_DIRECT, then reads it back with O_DIRECT (the disk's own
# read rate, which a consumer of data written with direct I/O gets at best).
dd_read_rate() {
  local file=$DATA_DIR/galgo-bench-dd.$$
  dd if=/dev/zero of="$file" bs=1M count=1024 oflag=direct 2>/dev/null
  dd if="$file" of=/dev/null bs=1M iflag=direct 2>&1 | tail -1
  rm -f "$file"
}

TCP=iggy://iggy:iggy@127.0.0.1:$PORT
WS=iggy+ws://iggy:iggy@127.0.0.1:$WS_PORT
BIG=(--message-size 1000 --messages-per-batch 1000 --warmup-secs 1)
say "# galgo targets $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
say "disk references (1 GiB): O_DIRECT $(dd_rate oflag=direct | awk -F', ' '{print $NF}'), buffered + fdatasync $(dd_rate conv=fdatasync | awk -F', ' '{print $NF}'), O_DIRECT read $(dd_read_rate | awk -F', ' '{print $NF}')"

# What this machine allows without a disk: the producer and consumer workloads with the data
# directory in memory (tmpfs), so the ratio is bounded only by the CPU work of the server
# (receive, checksum, copy into the file, read, send) beside the client on the same cores.
SHM_DIR=${SHM_DIR:-/dev/shm}
if [[ -d $SHM_DIR && -w $SHM_DIR ]]; then
  for i in $(seq "$RUNS"); do
    say "== 0. without a disk: producer then consumer, data in $SHM_DIR, run $i"
    DATA_DIR=$SHM_DIR start_server "tmpfs-producer-$i" --set storage.direct_io=off
    bench "tmpfs-producer-$i" "$TCP" "fsync=interval,tmpfs" \
      --mode pinned-producer --producers 2 --partitions 1 --batches 500 "${BIG[@]}"
    stop_server
    DATA_DIR=$SHM_DIR start_server "tmpfs-consumer-$i" --set storage.direct_io=off
    bench "tmpfs-consumer-$i" "$TCP" "fsync=interval,tmpfs" \
      --mode pinned-consumer --consumers 2 --partitions 1 --batches 500 "${BIG[@]}"
    stop_server
  done
  # Target 6's workload where an fdatasync costs nothing: what the CPU allows it.
  say "== 0. without a disk: fsync=always, 8 producers on one partition, data in $SHM_DIR"
  DATA_DIR=$SHM_DIR start_server "tmpfs-always" --set storage.fsync=always \
    --set storage.direct_io=off
  bench "tmpfs-always-100k" "$TCP" "fsync=always,tmpfs" --mode balanced-producer --producers 8 \
    --streams 1 --partitions 1 --message-size 1000 --messages-per-batch 100 --batches 1000 \
    --warmup-secs 1 --baseline-secs 0
  bench "tmpfs-always-1m" "$TCP" "fsync=always,tmpfs" --mode balanced-producer --producers 8 \
    --streams 1 --partitions 1 --message-size 1000 --messages-per-batch 1000 --batches 100 \
    --warmup-secs 1 --baseline-secs 0
  stop_server
fi

for mode in auto off; do
  for i in $(seq "$RUNS"); do
    say "== 1. producer 1 GB, direct_io=$mode, run $i"
    start_server "producer-$mode-$i" --set "storage.direct_io=$mode"
    bench "producer-$mode-$i" "$TCP" "fsync=interval,direct_io=$mode" \
      --mode pinned-producer --producers 2 --partitions 1 --batches 500 "${BIG[@]}"
    stop_server
    say "== 2. consumer 1 GB, direct_io=$mode, run $i"
    start_server "consumer-$mode-$i" --set "storage.direct_io=$mode"
    bench "consumer-$mode-$i" "$TCP" "fsync=interval,direct_io=$mode" \
      --mode pinned-consumer --consumers 2 --partitions 1 --batches 500 "${BIG[@]}"
    stop_server
  done
  say "== 3. producer 10 GB, direct_io=$mode"
  start_server "producer-10g-$mode" --set "storage.direct_io=$mode"
  bench "producer-10g-$mode" "$TCP" "fsync=interval,direct_io=$mode" \
    --mode pinned-producer --producers 2 --partitions 1 --batches 5000 "${BIG[@]}"
  stop_server
done

for i in $(seq "$RUNS"); do
  say "== 4. one 100-byte message per request, run $i"
  start_server "small-$i"
  bench "small-$i" "$TCP" "fsync=interval" --mode pinned-producer --producers 2 --partitions 1 \
    --message-size 100 --messages-per-batch 1 --batches 20000 --warmup-secs 1
  stop_server
done

for i in $(seq "$RUNS"); do
  say "== 5. WebSocket then TCP producers, one server, pair $i"
  start_server "ws-tcp-$i"
  for transport in ws tcp; do
    url=$TCP
    [[ $transport == ws ]] && url=$WS
    bench "ws-tcp-$i-$transport" "$url" "fsync=interval" --mode pinned-producer --producers 2 \
      --partitions 1 --batches 500 --stream-prefix "bench-$transport" --baseline-secs 0 "${BIG[@]}"
  done
  stop_server
done

for i in $(seq "$RUNS"); do
  say "== 6. fsync=always, 8 producers on one partition, pair $i"
  say "  dd buffered + fdatasync: $(dd_rate conv=fdatasync | awk -F', ' '{print $NF}')"
  # What group commit can do at best here: each group of 8 batches written and synced before
  # the next (8 closed-loop producers never have more than 8 batches in flight).
  say "  dd O_DIRECT + dsync, 800 KB writes (8 x 100 KB): $(dd_rate_synced 800k 1250 | awk -F', ' '{print $NF}'), 8 MB writes (8 x 1 MB): $(dd_rate_synced 8M 125 | awk -F', ' '{print $NF}')"
  start_server "always-$i" --set storage.fsync=always
  bench "always-100k-$i" "$TCP" "fsync=always" --mode balanced-producer --producers 8 --streams 1 \
    --partitions 1 --message-size 1000 --messages-per-batch 100 --batches 1000 --warmup-secs 1 \
    --baseline-secs 0
  bench "always-1m-$i" "$TCP" "fsync=always" --mode balanced-producer --producers 8 --streams 1 \
    --partitions 1 --message-size 1000 --messages-per-batch 1000 --batches 100 --warmup-secs 1 \
    --baseline-secs 0
  stop_server
done

say "== 7. start: a first start (creates the root user), then 5 restarts on the same data"
# start_probe LOG: starts the server on $DATA and prints how long after the spawn a Ping was
# first answered (TCP accepted and served), the root login succeeded and the ready line came.
start_probe() {
  python3 - "$SERVER" "$DATA" "$PORT" "$WS_PORT" "$1" <<'PY'
import socket, struct, subprocess, sys, threading, time
server, data, port, ws_port, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def exact(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise SystemExit("the server closed the connection")
        data += chunk
    return data
def request(conn, code, payload=b""):
    conn.sendall(struct.pack("<II", 4 + len(payload), code) + payload)
    status, length = struct.unpack("<II", exact(conn, 8))
    exact(conn, length)
    return status
started = time.monotonic()
proc = subprocess.Popen([server, "--data-dir", data, "--set", f"tcp.address=127.0.0.1:{port}",
                         "--set", f"websocket.address=127.0.0.1:{ws_port}"],
                        stdout=subprocess.PIPE, stderr=open(log, "w"))
ready = threading.Event()
def watch():
    for line in proc.stdout:
        if line.startswith(b"galgo-server ready"):
            ready.time = time.monotonic()
            ready.set()
threading.Thread(target=watch, daemon=True).start()
deadline = started + 10
while True:
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("no TCP listener within 10 s")
        time.sleep(0.0002)
assert request(conn, 1) == 0, "ping failed"
pinged = time.monotonic()
login = bytes([4]) + b"iggy" + bytes([4]) + b"iggy" + struct.pack("<II", 0, 0)
assert request(conn, 38, login) == 0, "root login failed"
logged_in = time.monotonic()
assert ready.wait(10), "no ready line within 10 s"
ms = lambda at: f"{1000 * (at - started):.1f} ms"
print(f"ping answered {ms(pinged)}, root login {ms(logged_in)}, ready line {ms(ready.time)}, pid {proc.pid}")
PY
}
DATA=$(mktemp -d "$DATA_DIR/galgo-bench-data.XXXXXX")
for i in 1 2 3 4 5 6; do
  probe=$(start_probe "$OUT/start-$i.log")
  SERVER_PID=${probe##* }
  sleep 0.5
  say "  start $i: ${probe%, pid *}, RSS $(grep VmRSS /proc/"$SERVER_PID"/status | tr -s ' \t' ' ')"
  kill "$SERVER_PID"
  while kill -0 "$SERVER_PID" 2>/dev/null; do sleep 0.05; done
done
rm -rf "$DATA"
say "# done $(date -u +%FT%TZ); reports in $OUT"
