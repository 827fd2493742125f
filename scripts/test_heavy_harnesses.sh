#!/usr/bin/env bash
# The real eval-factory packages beyond bigcode and lm-eval, through the plugin, offline (local data), twice over:
# with scripted models and judges whose right answers prove the packages score right (simple-evals MGSM,
# BFCL under bubblewrap, safety-harness Aegis v2 and MT-Bench judged through the plugin's judge route, garak
# test.Test under -n 2), and on the demo the plugin deploys itself (--nemo-checkpoint=demo,
# tests/harness/test_heavy_packages_on_demo.py: the packages' stock prompts served with no model error, their
# metrics in range, nemo.code_isolation and nemo.judge.*). Not part of scripts/test.sh, to keep CI within its
# time budget: one pinned venv per package (measured: simple-evals 90 s / 723 MB, BFCL 129 s / 328 MB,
# safety-harness 53 s / 777 MB, MT-Bench 188 s / 1.7 GB and garak 134 s / 2.1 GB with the CPU torch wheel),
# built once and cached; then the tests (measured on 2 cores, 14 tests in 5 minutes: the oracle ones about 2,
# the ones on the demo about 3 — simple-evals 31 s, BFCL 36 s, garak 32 s, MT-Bench 47 s, safety-harness 31 s,
# each deploying the demo once). Extra pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
for set in simple-evals bfcl safety-harness mtbench garak; do
    python fixtures/harness_image/eval_factory_venv.py "$set" > /dev/null
done
python -m pytest tests/harness/test_simple_evals_package.py tests/harness/test_bfcl_package.py \
    tests/harness/test_safety_harness_package.py tests/harness/test_judges.py tests/harness/test_garak_package.py \
    tests/harness/test_heavy_packages_on_demo.py -q "$@"
