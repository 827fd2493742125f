#!/usr/bin/env bash
# Set up (idempotent) and run the plugin's own test suite.
# With NEMO_EVAL_SECOND_SEED=N (CI sets it), the tests that use the trained demo run again against a
# demo trained from seed N: they must hold for any demo that learned its tasks, not for one training run.
set -euo pipefail
cd "$(dirname "$0")/.."
NEMO_EVAL_EXTRAS=test,ray bash scripts/setup.sh
. .venv/bin/activate
python -m pytest tests -ra "$@"
if [ -n "${NEMO_EVAL_SECOND_SEED:-}" ]; then
    echo "[test] the demo-model tests again, against a demo trained from seed ${NEMO_EVAL_SECOND_SEED}"
    NEMO_EVAL_DEMO_SEED="${NEMO_EVAL_SECOND_SEED}" python -m pytest tests -ra -m "demo_model and not ray_backend and not any_checkpoint" "$@"
fi
