#!/usr/bin/env bash
# Runs galgo's whole test suite: formatting and clippy, unit tests, the official-SDK
# compatibility tests and the end-to-end server tests. Rust crates come from crates.io through cargo; the Python SDK
# (apache-iggy 0.8.0, for tests/python_sdk.rs) comes from PyPI into a virtual environment of
# its own under the target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
# Lints, warnings as errors; clippy.toml holds too_many_lines at 70 (enabled for every crate
# in the workspace's [workspace.lints]).
cargo clippy --workspace --all-targets --locked -- -D warnings

PYTHON_SDK_VERSION=0.8.0
venv="${CARGO_TARGET_DIR:-target}/python-sdk-venv"
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('apache-iggy') == '$PYTHON_SDK_VERSION'" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "apache-iggy==$PYTHON_SDK_VERSION"
fi
export GALGO_PYTHON="$(cd "$venv" && pwd)/bin/python"

cargo test --workspace --locked "$@"
