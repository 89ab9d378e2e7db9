#!/usr/bin/env bash
# Runs galgo's whole test suite: unit tests, the official-SDK compatibility tests and the
# end-to-end server tests. Everything it needs comes from crates.io through cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo test --workspace --locked "$@"
