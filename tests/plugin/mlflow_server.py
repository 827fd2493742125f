"""A real `mlflow server` (SQLite backend store, local artifact root, 127.0.0.1) for the export
tests. MLflow's server is installed in its own venv (scripts/setup.sh: `.venv-mlflow`, pinned by
fixtures/mlflow_server/constraints.txt) because its pins conflict with ours; the plugin itself
only needs the client, `mlflow-skinny`. NEMO_EVAL_MLFLOW_SERVER names another `mlflow` executable."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]


def mlflow_executable() -> str:
    candidates = [os.environ.get("NEMO_EVAL_MLFLOW_SERVER", ""), str(REPO / ".venv-mlflow" / "bin" / "mlflow")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("no MLflow server: run scripts/setup.sh with NEMO_EVAL_EXTRAS=test (it builds .venv-mlflow) "
                "or set NEMO_EVAL_MLFLOW_SERVER to an `mlflow` executable")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """The tracking URI of a fresh server, stopped (process group) after the session."""
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [mlflow_executable(), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", (folder / "artifacts").as_uri()],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine: still starting
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
