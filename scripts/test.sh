#!/usr/bin/env bash
# The README's test command: unit tests, example validation and CRD drift check.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmi/target}"
cargo test --workspace --locked
