#!/usr/bin/env bash
# Judged eval-factory harnesses through the plugin, offline (MT-Bench with a scripted model and a scripted
# judge, reached through the plugin's judge route). Not part of scripts/test.sh: the MT-Bench venv holds
# torch, ray and transformers (~1.5 GB with the CPU torch wheel). Builds the pinned venv once (minutes),
# then runs the judge tests; pass extra pytest arguments through.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
python fixtures/harness_image/eval_factory_venv.py mtbench
python -m pytest tests/harness/test_judges.py -q "$@"
