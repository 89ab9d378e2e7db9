#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each; FUZZ_SECONDS=N to change).
# Needs the nightly toolchain (installed on the project's machines) and cargo-fuzz, which this
# script installs from crates.io when it is missing. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install cargo-fuzz --locked
fi
for target in $(cargo +nightly fuzz list); do
  echo "== fuzzing ${target} for ${seconds}s"
  cargo +nightly fuzz run "${target}" -- -max_total_time="${seconds}" -rss_limit_mb=4096
done
