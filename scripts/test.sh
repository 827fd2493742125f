#!/usr/bin/env bash
# Set up (idempotent) and run the plugin's own test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
NEMO_EVAL_EXTRAS=test bash scripts/setup.sh
. .venv/bin/activate
exec python -m pytest tests -ra "$@"
