#!/usr/bin/env bash
# The README's test command: unit tests, the examples against the CRDs, the CRD and API reference
# drift checks, the data plane with real runtime clients, the operator end to end and the chart on
# the local cluster (started when none runs). Safe beside the main job (scripts/run.sh): the tests
# use their own namespaces, capacity provider, real nodes and operator instance.
#
# Every test binary runs even when an earlier one fails (--no-fail-fast); the end shows a summary
# with every failed test, and the exit status is non-zero when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lmi/target}"
LOG_DIR="${LMI_CACHE_DIR:-$HOME/.cache/lmi}/test-logs"
mkdir -p "$LOG_DIR"
LOG="$LOG_DIR/cargo-test.log"

cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}

echo
echo "== summary (full output: $LOG)"
# One "test result:" line per test binary and doc-test run.
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) passed += $(i - 1)
            if ($(i) ~ /^failed;?$/) failed += $(i - 1)
            if ($(i) ~ /^ignored;?$/) ignored += $(i - 1)
        }
        binaries++
     }
     END { printf "%d test binaries; %d ignored\n", binaries, ignored; printf "TOTAL %d passed, %d failed\n", passed, failed > "/dev/stderr" }' "$LOG" 2>"$LOG_DIR/totals"
failed_tests=$(grep -E '^test .* \.\.\. FAILED$' "$LOG" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' | sort -u)
failed_binaries=$(grep -E '^error: test failed, to rerun pass' "$LOG" | sed -E 's/^error: test failed, to rerun pass `?//; s/`$//')
if [ -n "$failed_tests" ]; then
    echo "failed tests:"
    echo "$failed_tests" | sed 's/^/  /'
fi
if [ -n "$failed_binaries" ]; then
    echo "failed test binaries (rerun with):"
    echo "$failed_binaries" | sed 's/^/  cargo test /'
fi
if [ "$status" -ne 0 ] && [ -z "$failed_tests" ]; then
    echo "cargo test exited with $status before or outside any test (a build error?): see $LOG"
fi
# The closing line: "N passed, N failed".
sed 's/^TOTAL //' "$LOG_DIR/totals"
exit "$status"
