#!/usr/bin/env bash
# The cluster nemesis, long: three galgo nodes on loopback whose links pass fault proxies,
# STEPS rounds of one random fault on a random node (SIGKILL and restart, cut both ways, cut
# one way, slow links) while streams and topics are created and deleted and messages sent
# through random nodes; then a history check of both,
# and again after every node restarted (crates/server/tests/cluster.rs, `nemesis`). Each run
# prints its seed; SEED replays it. Figures in docs/reliability.md.
#
#   scripts/cluster-nemesis.sh
#   Environment: SEED (default: from the clock), STEPS (default 40), RUNS (default 1: runs
#   with seeds SEED, SEED+1, ...), FACTOR (the messages topic's replication factor; default
#   0, not set: 3).
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-$(date +%s)}
STEPS=${STEPS:-40}
RUNS=${RUNS:-1}
for run in $(seq 0 $((RUNS - 1))); do
  NEMESIS_SEED=$((SEED + run)) NEMESIS_STEPS=$STEPS NEMESIS_FACTOR=${FACTOR:-0} \
    cargo test --locked -p galgo-server --test cluster -- --ignored --nocapture --exact nemesis 2>&1 |
    grep -E '^(nemesis seed|step |[0-9]+ acknowledged|messages:|reads:|metadata snapshots:|test result)|panicked|disagree|missing|never asked|stored twice|refused but stored|in the order|was given|was read as|did not get there'
done
