# Shared by the benchmark scripts (sourced, not run): starting a galgo-server on a fresh data
# directory and waiting for it.

# start_galgo BINARY LOG ARGS...: a galgo-server with ARGS on a fresh data directory under
# $DATA_DIR, its output in LOG; sets SERVER_PID and DATA. Waits for its ready line (bounded:
# 15 s) and exits the script if it does not come.
start_galgo() {
  local binary=$1 log=$2
  shift 2
  DATA=$(mktemp -d "$DATA_DIR/galgo-bench-data.XXXXXX")
  "$binary" --data-dir "$DATA" "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do
    grep -q "galgo-server ready" "$log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "galgo-server did not start; see $log" >&2
  exit 1
}

# stop_galgo: stops the server start_galgo started (waits for it) and removes its data
# directory. Scripts arm it at start, `SERVER_PID=; trap '[[ -n "$SERVER_PID" ]] && stop_galgo'
# EXIT`, so an interrupted run leaves no server behind on the port for the next one.
stop_galgo() {
  kill "$SERVER_PID"
  wait "$SERVER_PID" || true
  rm -rf "$DATA"
  SERVER_PID=
}
