"""Fixtures of the harness tests: a misbehaving fake harness, a hanging endpoint, the harness image."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGE = REPO / "fixtures" / "harness_image" / "build_image.py"


@pytest.fixture
def fake_harness(tmp_path, monkeypatch):
    """Put the misbehaving fake harness on PATH as `nemo-evaluator`; returns a mode setter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nemo-evaluator"
    source = (Path(__file__).parent / "fake_harness.py").read_text()
    script.write_text(f"#!{sys.executable}\n" + source)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HARNESS_PIDFILE", str(tmp_path / "fake.pids"))
    return lambda mode: monkeypatch.setenv("FAKE_HARNESS_MODE", mode)


@pytest.fixture
def hanging_endpoint():
    """A TCP server that accepts connections and never answers: a model server that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1/completions"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture
def closed_port_url():
    """URL of a port nobody listens on."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/v1/completions"


@pytest.fixture(scope="session")
def completions_url(demo_deployment) -> str:
    return f"{demo_deployment.url}/v1/completions"


def docker_unreachable_reason() -> str | None:
    if shutil.which("docker") is None:
        return "docker CLI not installed (scripts/start_docker.sh installs it)"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"no Docker daemon reachable (start one with scripts/start_docker.sh): {probe.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="session")
def harness_image() -> str:
    """`nemo-eval-harness:local`, built once (minutes the first time, cached by content hash)."""
    reason = docker_unreachable_reason()
    if reason:
        pytest.skip(reason)
    build = subprocess.run([sys.executable, str(BUILD_IMAGE)], capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"harness image build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return "nemo-eval-harness:local"


def leftover_containers(label_value: str) -> list[str]:
    result = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=nemo-eval.benchmark={label_value}"],
        capture_output=True, text=True, check=True,
    )
    return result.stdout.split()
