#!/usr/bin/env bash
# A galgo cluster of NODES nodes (default 3) on loopback, for trying it out: each node a
# galgo-server process with its own config, data directory, log and ports, one unpinned shard.
#
#   scripts/cluster.sh up       starts the nodes (built in release mode unless SERVER is set)
#                               and prints their client addresses
#   scripts/cluster.sh status   which nodes run, and each one's /health
#   scripts/cluster.sh down     stops them (SIGTERM, then SIGKILL after 10 s); data is kept
#   scripts/cluster.sh clean    down, then removes CLUSTER_DIR
#
# Environment: CLUSTER_DIR (default ${TMPDIR:-/tmp}/galgo-cluster: node<i>.toml, node<i>.log,
# node<i>.pid, data<i>/), NODES (default 3), BASE_PORT (default 18200): node i listens on
# BASE_PORT + 10 i for TCP, + 2 WebSocket, + 3 HTTP (/metrics, /health), + 5 replication.
# TICK_MS: the Raft tick (default 100). ACK: when sends are acknowledged, majority (default)
# or leader. FSYNC: [storage] fsync (default: the server's, interval).
# SERVER: a galgo-server binary; TARGET_DIR: cargo's target directory for the build.
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER_DIR=${CLUSTER_DIR:-${TMPDIR:-/tmp}/galgo-cluster}
NODES=${NODES:-3}
BASE_PORT=${BASE_PORT:-18200}
TARGET_DIR=${TARGET_DIR:-${CARGO_TARGET_DIR:-target}}

port() { echo $((BASE_PORT + 10 * $1 + $2)); }

write_config() {
  local node=$1 peer
  {
    echo "[system]"
    echo "data_dir = \"$CLUSTER_DIR/data$node\""
    echo "[tcp]"
    echo "address = \"127.0.0.1:$(port "$node" 0)\""
    echo "[websocket]"
    echo "address = \"127.0.0.1:$(port "$node" 2)\""
    echo "[http]"
    echo "address = \"127.0.0.1:$(port "$node" 3)\""
    if [[ -n "${FSYNC:-}" ]]; then
      echo "[storage]"
      echo "fsync = \"$FSYNC\""
    fi
    echo "[shards]"
    echo "count = 1"
    echo "pin = false"
    echo "[cluster]"
    echo "enabled = true"
    echo "id = \"galgo-local\""
    echo "node_id = $node"
    echo "replication_address = \"127.0.0.1:$(port "$node" 5)\""
    echo "tick_ms = ${TICK_MS:-100}"
    echo "ack = \"${ACK:-majority}\""
    for peer in $(seq "$NODES"); do
      echo "[[cluster.peers]]"
      echo "id = $peer"
      echo "replication_address = \"127.0.0.1:$(port "$peer" 5)\""
      echo "tcp = \"127.0.0.1:$(port "$peer" 0)\""
      echo "websocket = \"127.0.0.1:$(port "$peer" 2)\""
    done
  } >"$CLUSTER_DIR/node$node.toml"
}

# running NODE: whether the node's process exists and has not exited (a killed process can
# linger as a zombie until its new parent reaps it).
running() {
  local pid state
  pid=$(cat "$CLUSTER_DIR/node$1.pid" 2>/dev/null) || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z* ]]
}

up() {
  local server=${SERVER:-}
  if [[ -z "$server" ]]; then
    CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --locked -p galgo-server
    server=$TARGET_DIR/release/galgo-server
  fi
  mkdir -p "$CLUSTER_DIR"
  local node
  for node in $(seq "$NODES"); do
    if running "$node"; then
      echo "node $node already runs (pid $(cat "$CLUSTER_DIR/node$node.pid"))"
      continue
    fi
    write_config "$node"
    : >"$CLUSTER_DIR/node$node.log"
    nohup "$server" --config "$CLUSTER_DIR/node$node.toml" >>"$CLUSTER_DIR/node$node.log" 2>&1 &
    echo $! >"$CLUSTER_DIR/node$node.pid"
  done
  for node in $(seq "$NODES"); do
    local waited=0
    until grep -q "galgo-server ready" "$CLUSTER_DIR/node$node.log"; do
      if ! running "$node" || ((waited >= 300)); then
        echo "node $node did not start; see $CLUSTER_DIR/node$node.log" >&2
        exit 1
      fi
      sleep 0.05
      waited=$((waited + 1))
    done
  done
  echo "galgo cluster galgo-local: $NODES nodes, files in $CLUSTER_DIR"
  for node in $(seq "$NODES"); do
    echo "  node $node: tcp=127.0.0.1:$(port "$node" 0) websocket=127.0.0.1:$(port "$node" 2) http=127.0.0.1:$(port "$node" 3)"
  done
  echo "try: GALGO_USERNAME=iggy GALGO_PASSWORD=iggy galgo --url iggy://iggy:iggy@127.0.0.1:$(port 1 0) stream list"
}

# health NODE: the status line of the node's /health, over bash's /dev/tcp (no curl needed).
health() {
  local reply
  reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$(port "$1" 3); \
    printf 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3; head -n1 <&3" 2>/dev/null) || true
  echo "${reply%$'\r'}"
}

status() {
  local node
  for node in $(seq "$NODES"); do
    if running "$node"; then
      echo "node $node: running (pid $(cat "$CLUSTER_DIR/node$node.pid")), /health: $(health "$node")"
    else
      echo "node $node: stopped"
    fi
  done
}

down() {
  local node pid waited
  for node in $(seq "$NODES"); do
    running "$node" || continue
    pid=$(cat "$CLUSTER_DIR/node$node.pid")
    kill "$pid" 2>/dev/null || true
    waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < 100)); do sleep 0.1; waited=$((waited + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$CLUSTER_DIR/node$node.pid"
    echo "node $node stopped"
  done
}

case "${1:-}" in
  up) up ;;
  status) status ;;
  down) down ;;
  clean) down; rm -rf "$CLUSTER_DIR" ;;
  *) echo "usage: $0 up|status|down|clean" >&2; exit 2 ;;
esac
