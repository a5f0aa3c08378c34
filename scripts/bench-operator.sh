#!/usr/bin/env bash
# Operator benchmark on the local cluster (kwok nodes launched by real Karpenter, kwok provider):
# publish-to-Active with capacity present and with new NodeClaims, then memory and reconcile rate
# with many functions. Prints numbers (see docs/benchmarks.md); asserts nothing.
#   bash scripts/bench-operator.sh [--runs 5] [--functions 200] [--ees 5]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmi/target}"
cargo build --quiet --release -p lmi-operator --bin lmi-operator
cargo build --quiet -p lmi-e2e --bin lmi-bench-operator
LMI_OPERATOR_BIN="$CARGO_TARGET_DIR/release/lmi-operator" exec "$CARGO_TARGET_DIR/debug/lmi-bench-operator" "$@"
