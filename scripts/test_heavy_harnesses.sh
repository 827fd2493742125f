#!/usr/bin/env bash
# The real eval-factory packages beyond bigcode and lm-eval, through the plugin, offline (local data, scripted
# models and judges): simple-evals MGSM, BFCL under bubblewrap, safety-harness Aegis v2 and MT-Bench judged
# through the plugin's judge route, garak test.Test under -n 2. Not part of scripts/test.sh, to keep CI within
# its time budget: one pinned venv per package (measured: simple-evals 90 s / 723 MB, BFCL 129 s / 328 MB,
# safety-harness 53 s / 777 MB, MT-Bench 188 s / 1.7 GB and garak 134 s / 2.1 GB with the CPU torch wheel),
# built once and cached; then the tests (about 2 minutes). Extra pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
for set in simple-evals bfcl safety-harness mtbench garak; do
    python fixtures/harness_image/eval_factory_venv.py "$set" > /dev/null
done
python -m pytest tests/harness/test_simple_evals_package.py tests/harness/test_bfcl_package.py \
    tests/harness/test_safety_harness_package.py tests/harness/test_judges.py tests/harness/test_garak_package.py \
    -q "$@"
