#!/usr/bin/env bash
# Runs galgo's whole test suite: formatting and clippy, unit tests, the official-SDK
# compatibility tests and the end-to-end server tests. Rust crates come from crates.io through cargo; the Python SDKs
# of both client generations (apache-iggy 0.8.0 and 0.9.0, for tests/python_sdk.rs) come from
# PyPI, each into a virtual environment of its own under the target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
# A whole-suite run from a clean clone gains nothing from incremental state (2.8 GB of it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo fmt --all -- --check
# Lints, warnings as errors; clippy.toml holds too_many_lines at 70 (enabled for every crate
# in the workspace's [workspace.lints]).
cargo clippy --workspace --all-targets --locked -- -D warnings

# Prints the interpreter of a virtual environment at $1 holding apache-iggy $2, creating or
# refreshing it first when it holds another version (or nothing).
python_sdk_venv() {
  local venv="$1" version="$2"
  if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('apache-iggy') == '$version'" 2>/dev/null; then
    # Command substitution does not inherit `set -e`: failures return explicitly.
    python3 -m venv "$venv" >&2 || return 1
    "$venv/bin/pip" install --quiet --disable-pip-version-check "apache-iggy==$version" >&2 || return 1
  fi
  echo "$(cd "$venv" && pwd)/bin/python"
}
# The 0.8 client generation (classic framing) and the 0.9 one (VSR framing).
GALGO_PYTHON="$(python_sdk_venv "${CARGO_TARGET_DIR:-target}/python-sdk-venv" 0.8.0)"
GALGO_PYTHON_NEXT="$(python_sdk_venv "${CARGO_TARGET_DIR:-target}/python-sdk-next-venv" 0.9.0)"
export GALGO_PYTHON GALGO_PYTHON_NEXT

cargo test --workspace --locked "$@"
