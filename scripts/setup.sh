#!/usr/bin/env bash
# Idempotent setup of a fresh Debian machine: bubblewrap (the sandbox model-written
# code runs in), venv with the CPU torch wheel first (an unpinned torch pulls a
# multi-GB CUDA build), the package, and a Docker daemon when we are root and none
# is reachable (the harness container tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."

# Code benchmarks run each model-written sample under bubblewrap; without it they are skipped
# (or run unsandboxed on --nemo-allow-unsandboxed-code). Debian's package is `bubblewrap`.
if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing bubblewrap (apt-get)"
        apt-get install -y -q bubblewrap >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; } \
            || echo "[setup] could not install bubblewrap: code benchmarks will be skipped, with a reason" >&2
    else
        echo "[setup] bubblewrap (bwrap) is missing: install it (sudo apt-get install -y bubblewrap) or code benchmarks are skipped" >&2
    fi
fi

# The HTML report's test opens it in a real headless browser: Debian's `chromium` (about 1 min).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium (apt-get; the HTML report test's headless browser)"
    apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null; } \
        || echo "[setup] could not install chromium: the HTML browser test will be skipped, with a reason" >&2
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
# NEMO_EVAL_EXTRAS=test adds the third-party oracles the tests need (openai, lm-eval); ray the Ray Serve backend;
# docs the docs site (mkdocs, scripts/docs.sh).
target="."; [ -n "${NEMO_EVAL_EXTRAS:-}" ] && target=".[${NEMO_EVAL_EXTRAS}]"
echo "[setup] installing torch (CPU wheel) and pytest-nemo-eval${NEMO_EVAL_EXTRAS:+ with [${NEMO_EVAL_EXTRAS}]} (pinned by constraints.txt)"
pip install -q --disable-pip-version-check -c constraints.txt "torch==2.13.0" 2>&1 | grep -v "is ignored: it is neither" || true
pip install -q --disable-pip-version-check -c constraints.txt -e "$target" 2>&1 | grep -v "is ignored: it is neither" || true
python -W ignore -c "import torch, megatron.core, pytriton, pytest_nemo_eval" \
    || { echo "[setup] the Python environment is incomplete (see pip output above)" >&2; exit 1; }

# The MLflow export tests start a real `mlflow server`; its pins conflict with ours, so it lives in its
# own venv (the plugin needs only the client, mlflow-skinny). About 1 min; only with the test extra.
if [[ ",${NEMO_EVAL_EXTRAS:-}," == *",test,"* ]] && [ ! -x .venv-mlflow/bin/mlflow ]; then
    echo "[setup] creating .venv-mlflow (the MLflow server the export tests start)"
    "$PYTHON" -m venv .venv-mlflow
    .venv-mlflow/bin/pip install -q --disable-pip-version-check -c fixtures/mlflow_server/constraints.txt \
        "mlflow==3.17.2" 2>&1 | grep -v "is ignored: it is neither" || true
    .venv-mlflow/bin/mlflow --version >/dev/null \
        || echo "[setup] the MLflow server venv is incomplete: the MLflow export tests will be skipped" >&2
fi

# inspect_ai, the tool-use client of tests/clients/test_inspect_tools.py: its pins conflict with ours (fsspec), so
# it lives in its own venv, pinned by fixtures/inspect/constraints.txt. About 40 s; only with the test extra.
if [[ ",${NEMO_EVAL_EXTRAS:-}," == *",test,"* ]] && [ ! -x .venv-inspect/bin/inspect ]; then
    echo "[setup] creating .venv-inspect (inspect_ai, the tool-use client the tests run)"
    "$PYTHON" -m venv .venv-inspect
    .venv-inspect/bin/pip install -q --disable-pip-version-check -c fixtures/inspect/constraints.txt \
        "inspect-ai==0.3.285" openai 2>&1 | grep -v "is ignored: it is neither" || true
    .venv-inspect/bin/inspect --version >/dev/null \
        || echo "[setup] the inspect_ai venv is incomplete: the inspect_ai tool-use test will be skipped" >&2
fi

if [ "${NEMO_EVAL_SKIP_DOCKER:-0}" != "1" ]; then
    bash scripts/start_docker.sh || echo "[setup] no Docker daemon: the container tests will be skipped, with a reason"
fi
