"""Docker runtime: the builtin harness in a real container built here, and its fault paths.

Needs a Docker daemon (scripts/start_docker.sh); without one these tests skip
with the reason, except the daemon-down test, which needs none.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest

from pytest_nemo_eval.harness.errors import HarnessFailed, HarnessTimeout, RuntimeUnavailable
from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness

from .conftest import leftover_containers


def invocation(tmp_path, **overrides) -> HarnessInvocation:
    fields = dict(
        harness="builtin", task="sample_gsm_arith", model_id="demo", runtime="docker",
        model_url="http://127.0.0.1:9/v1/completions", output_dir=tmp_path / "out",
        log_prefix=f"docker-test-{uuid.uuid4().hex[:8]}",
    )
    fields.update(overrides)
    return HarnessInvocation(**fields)


def test_daemon_down_is_a_clear_runtime_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(RuntimeUnavailable, match="Docker daemon is not reachable.*no-docker.sock.*runtime: local"):
        run_harness(invocation(tmp_path))


def test_image_that_cannot_be_pulled_is_a_clear_error(tmp_path, harness_image):
    inv = invocation(tmp_path, image="127.0.0.1:1/nemo-eval/missing:none")
    lines: list[str] = []
    with pytest.raises(RuntimeUnavailable, match="not present locally and cannot be pulled"):
        run_harness(inv, on_log=lines.append)
    assert any("pulling" in line for line in lines)


def test_harness_exiting_nonzero_in_the_container(tmp_path, harness_image, closed_port_url):
    inv = invocation(tmp_path, model_url=closed_port_url, overrides={"max_retries": 0})
    with pytest.raises(HarnessFailed, match="exited with status 1 in container") as info:
        run_harness(inv)
    assert "failed after retries" in str(info.value)  # the harness's own message, from the container log
    assert leftover_containers(inv.log_prefix) == []


def test_hanging_harness_container_is_stopped_and_removed(tmp_path, harness_image, hanging_endpoint):
    inv = invocation(tmp_path, model_url=hanging_endpoint, timeout_s=8)
    with pytest.raises(HarnessTimeout, match="stopped and removed"):
        run_harness(inv)
    assert leftover_containers(inv.log_prefix) == []
    running = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True, check=True).stdout
    assert running.strip() == ""
