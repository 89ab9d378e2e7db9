#!/usr/bin/env bash
# Failover time of a galgo cluster's metadata group, as a distribution over repeated kills:
# a 3-node loopback cluster (scripts/cluster.sh), then KILLS times: find the metadata leader
# (its /metrics says galgo_cluster_metadata_leading 1), SIGKILL it, and time from the kill to
# the first metadata change another node acknowledges (`galgo stream create`, retried at once
# on failure); then restart the killed node and wait until every node serves. Prints each time
# and min / median / max in ms (docs/benchmarks.md, "Cluster failover").
#
#   scripts/cluster-failover.sh
#   Environment: KILLS (default 10), TICK_MS (the cluster's tick, default 100), SERVER and CLI
#   (binaries; built in release mode if unset), CLUSTER_DIR, BASE_PORT (as cluster.sh).
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

# leader: the node whose /metrics says it leads, or nothing.
leader() {
  local node body
  for node in 1 2 3; do
    body=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$(port "$node" 3); \
      printf 'GET /metrics HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n' >&3; cat <&3" 2>/dev/null) || continue
    if grep -q '^galgo_cluster_metadata_leading 1' <<<"$body"; then
      echo "$node"
      return
    fi
  done
}

# create NODE NAME: one metadata change through NODE; fails fast when NODE is down.
create() { "$CLI" --url "iggy://iggy:iggy@127.0.0.1:$(port "$1" 0)" stream create "$2" >/dev/null 2>&1; }

for node in 1 2 3; do until create "$node" "warm-$node"; do sleep 0.1; done; done
times=()
for kill in $(seq "$KILLS"); do
  current=
  until [[ -n "$current" ]]; do current=$(leader); done
  survivor=$((current % 3 + 1))
  started=$(now_ms)
  kill -KILL "$(cat "$CLUSTER_DIR/node$current.pid")"
  until create "$survivor" "failover-$kill"; do :; done
  elapsed=$(($(now_ms) - started))
  times+=("$elapsed")
  echo "kill $kill: leader node $current killed; node $survivor acknowledged a change after $elapsed ms"
  scripts/cluster.sh up >/dev/null
  until create "$current" "back-$kill"; do sleep 0.1; done
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
count=${#times[@]}
echo "failover over $count kills (ms): min $(head -1 <<<"$sorted") median $(sed -n "$(((count + 1) / 2))p" <<<"$sorted") max $(tail -1 <<<"$sorted")"
