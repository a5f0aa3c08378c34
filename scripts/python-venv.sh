#!/usr/bin/env bash
# Makes the virtualenv with the real Lambda clients of scripts/python-clients.txt (the AWS CLI,
# boto3, awslambdaric) unless it is there, and prints its path. Used by scripts/run.sh and the
# end-to-end tests that call the router as AWS callers do.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$HOME/.cache/lmi/venv"
if ! "$VENV/bin/python" -c 'import awscli, boto3, awslambdaric' 2>/dev/null; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/python-clients.txt >&2
fi
echo "$VENV"
