# Shared by the benchmark scripts (sourced, not run): starting a galgo-server on a fresh data
# directory and waiting for it; whether a port is served, stopping a process, reading its RSS.

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
  kill "$SERVER_PID" 2>/dev/null || true # it may have exited already (a crash, a Ctrl-C)
  wait "$SERVER_PID" || true
  rm -rf "$DATA"
  SERVER_PID=
}

# port_open PORT: whether a socket listens on TCP port PORT. Asks ss (no connection, which a
# server could log as a failed handshake); without ss, one connect attempt to 127.0.0.1:PORT.
port_open() {
  if command -v ss >/dev/null; then
    [[ -n "$(ss -Hltn "sport = :$1")" ]]
  else
    timeout 1 bash -c ": >/dev/tcp/127.0.0.1/$1" 2>/dev/null
  fi
}

# wait_port_free PORT SECONDS: waits until no socket listens on PORT; fails after SECONDS.
wait_port_free() {
  local port=$1 deadline=$((SECONDS + $2))
  while port_open "$port"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# stop_pid PID SECONDS: SIGTERM to PID (a child of this shell), SIGKILL if it has not exited
# within SECONDS; then reaps it. Its exit status is ignored.
stop_pid() {
  local pid=$1 deadline=$((SECONDS + $2))
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "process $pid did not exit within $2 s of SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# rss_kb PID: the resident set size of PID in kB (VmRSS of /proc/PID/status), or "?".
rss_kb() {
  local rss
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null) || true
  echo "${rss:-?}"
}
