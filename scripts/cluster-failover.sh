#!/usr/bin/env bash
# Failover time of a galgo cluster's metadata group (or a partition group, below), as a distribution over repeated kills:
# a 3-node loopback cluster (scripts/cluster.sh), then KILLS times: find the metadata leader
# (its /metrics says galgo_cluster_metadata_leading 1), SIGKILL it, and time from the kill to
# the first metadata change another node acknowledges (`galgo stream create`, retried at once
# on failure); then restart the killed node and wait until every node serves. Prints each time
# and min / median / max in ms (docs/benchmarks.md, "Cluster failover").
#
# With GROUP=partition the same for a partition group: the node leading partition 0 of a
# one-partition topic (its /metrics' galgo_partition_leader) is killed, and the time runs to
# the first message another node acknowledges on that partition (`galgo message send`).
#
#   scripts/cluster-failover.sh
#   Environment: KILLS (default 10), GROUP (metadata, the default, or partition), TICK_MS (the
#   cluster's tick, default 100), SERVER and CLI (binaries; built in release mode if unset),
#   CLUSTER_DIR, BASE_PORT (as cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${KILLS:-10}
export CLUSTER_DIR=${CLUSTER_DIR:-${TMPDIR:-/tmp}/galgo-failover}
export BASE_PORT=${BASE_PORT:-18300}
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
if [[ -z "${SERVER:-}" || -z "${CLI:-}" ]]; then
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked -p galgo-server -p galgo-cli
  SERVER=${SERVER:-$TARGET_DIR/release/galgo-server}
  CLI=${CLI:-$TARGET_DIR/release/galgo}
fi
export SERVER
export GALGO_USERNAME=iggy GALGO_PASSWORD=iggy
port() { echo $((BASE_PORT + 10 * $1 + $2)); }
now_ms() { date +%s%3N; }

scripts/cluster.sh clean >/dev/null
trap 'scripts/cluster.sh clean >/dev/null' EXIT
scripts/cluster.sh up >/dev/null

GROUP=${GROUP:-metadata}

# metrics NODE: the node's /metrics, or nothing.
metrics() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$(port "$1" 3); \
    printf 'GET /metrics HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n' >&3; cat <&3" 2>/dev/null || true
}

# leader: the node leading the measured group, as a running node's /metrics says, or nothing.
leader() {
  local node body found
  for node in 1 2 3; do
    body=$(metrics "$node")
    if [[ "$GROUP" == partition ]]; then
      found=$(sed -n 's/^galgo_partition_leader{stream="failover",topic="events",partition="0"} \([1-9][0-9]*\)$/\1/p' <<<"$body")
      if [[ -n "$found" ]] && ! grep -q . <<<"$(metrics "$found" | head -c1)"; then
        found= # the node named is not up yet
      fi
      [[ -n "$found" ]] && { echo "$found"; return; }
    elif grep -q '^galgo_cluster_metadata_leading 1' <<<"$body"; then
      echo "$node"
      return
    fi
  done
}

# create NODE NAME: one metadata change through NODE; fails fast when NODE is down.
create() { "$CLI" --url "iggy://iggy:iggy@127.0.0.1:$(port "$1" 0)" stream create "$2" >/dev/null 2>&1; }

# change NODE NAME: what is timed: a metadata change, or a message to partition 0.
change() {
  if [[ "$GROUP" == partition ]]; then
    "$CLI" --url "iggy://iggy:iggy@127.0.0.1:$(port "$1" 0)" message send --partition 0 \
      failover events "$2" >/dev/null 2>&1
  else
    create "$1" "$2"
  fi
}

for node in 1 2 3; do until create "$node" "warm-$node"; do sleep 0.1; done; done
if [[ "$GROUP" == partition ]]; then
  until create 1 failover; do sleep 0.1; done
  until "$CLI" --url "iggy://iggy:iggy@127.0.0.1:$(port 1 0)" topic create --partitions 1 \
    failover events >/dev/null 2>&1; do sleep 0.1; done
  for node in 1 2 3; do until change "$node" "warm-$node"; do sleep 0.1; done; done
fi
times=()
for kill in $(seq "$KILLS"); do
  current=
  until [[ -n "$current" ]]; do current=$(leader); done
  survivor=$((current % 3 + 1))
  started=$(now_ms)
  kill -KILL "$(cat "$CLUSTER_DIR/node$current.pid")"
  until change "$survivor" "failover-$kill"; do :; done
  elapsed=$(($(now_ms) - started))
  times+=("$elapsed")
  echo "kill $kill: $GROUP leader node $current killed; node $survivor acknowledged after $elapsed ms"
  scripts/cluster.sh up >/dev/null
  until change "$current" "back-$kill"; do sleep 0.1; done
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
count=${#times[@]}
echo "failover over $count kills (ms): min $(head -1 <<<"$sorted") median $(sed -n "$(((count + 1) / 2))p" <<<"$sorted") max $(tail -1 <<<"$sorted")"
