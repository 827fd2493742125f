#!/usr/bin/env bash
# Static checks CI runs before the tests (tools pinned in constraints.txt, installed by the test extra):
# ruff on the whole repo (pyproject.toml [tool.ruff]: pyflakes + pycodestyle errors), and mypy --strict
# on the typed result and exporter modules, the contract every exporter codes against, and on the docs'
# generators (docsgen/).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] && . .venv/bin/activate
ruff check .
mypy --strict \
    pytest_nemo_eval/results.py pytest_nemo_eval/newhooks.py pytest_nemo_eval/paired.py pytest_nemo_eval/samples.py \
    pytest_nemo_eval/report/properties.py pytest_nemo_eval/report/baseline.py pytest_nemo_eval/report/summary.py \
    pytest_nemo_eval/report/json_file.py pytest_nemo_eval/report/html.py pytest_nemo_eval/report/mlflow_export.py \
    docsgen
