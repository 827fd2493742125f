#!/usr/bin/env bash
# Eval-factory harnesses whose packages hold torch (and ray), through the plugin, offline: MT-Bench with a
# scripted model and a scripted judge reached through the plugin's judge route, and garak's test.Test probe
# twice under -n 2. Not part of scripts/test.sh: their venvs are 1.7 GB (MT-Bench) and 2.1 GB (garak) with
# the CPU torch wheel. Builds the pinned venvs once (minutes), then runs the tests; extra pytest arguments
# pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
python fixtures/harness_image/eval_factory_venv.py mtbench
python fixtures/harness_image/eval_factory_venv.py garak
python -m pytest tests/harness/test_judges.py tests/harness/test_garak_package.py -q "$@"
