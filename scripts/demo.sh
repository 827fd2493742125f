#!/usr/bin/env bash
# Set up (idempotent) and run the smoke suite on the built-in demo checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
NEMO_EVAL_SKIP_DOCKER=1 bash scripts/setup.sh
. .venv/bin/activate
exec python -m pytest suites/smoke.yaml --nemo-checkpoint=demo --junitxml=nemo-eval-output/smoke.xml "$@"
