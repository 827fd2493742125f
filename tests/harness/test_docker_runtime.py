"""Docker runtime: the builtin harness in a real container built here, and its fault paths.

Needs a Docker daemon (scripts/start_docker.sh); without one these tests skip
with the reason, except the daemon-down test, which needs none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from pytest_nemo_eval.harness.errors import HarnessFailed, HarnessTimeout, RuntimeUnavailable
from pytest_nemo_eval.harness.runtime import HarnessInvocation, Mount, run_harness

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


def test_api_key_variable_not_set_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("NEMO_EVAL_UNSET_KEY", raising=False)
    with pytest.raises(RuntimeUnavailable, match="NEMO_EVAL_UNSET_KEY.*not set on the host"):
        run_harness(invocation(tmp_path, api_key_env="NEMO_EVAL_UNSET_KEY"))


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


def test_builtin_harness_in_a_container_scores_the_demo_deployment(tmp_path, harness_image, completions_url,
                                                                  monkeypatch):
    """Real container (--network host) against the real deployment on the host's loopback; it must
    produce exactly what the local runtime produces (greedy decoding), with the API key masked."""
    monkeypatch.setenv("NEMO_EVAL_TEST_KEY", "sk-container-secret")
    inv = invocation(tmp_path, task="demo_addition", model_url=completions_url, limit_samples=20,
                     parallelism=4, timeout_s=600, api_key_env="NEMO_EVAL_TEST_KEY")
    lines: list[str] = []
    run = run_harness(inv, on_log=lines.append)
    score = run.results.get_score("exact_match")
    local = run_harness(inv.model_copy(update={"runtime": "local", "output_dir": tmp_path / "local"}))
    assert score.stats.count == 20
    assert score.value == local.results.get_score("exact_match").value  # greedy: same answers either way
    assert (run.output_dir / "samples_demo_addition.jsonl").read_text() == (
        local.output_dir / "samples_demo_addition.jsonl").read_text()
    assert run.image == harness_image and run.image_digest.startswith("sha256:")
    assert (run.output_dir / "samples_demo_addition.jsonl").read_text().count("\n") == 20
    assert any("20/20 samples scored" in line for line in lines)
    assert "sk-container-secret" not in run.log_path.read_text() + "".join(lines)
    assert leftover_containers(inv.log_prefix) == []


def test_user_tasks_from_the_host_run_in_the_container(tmp_path, harness_image, completions_url, monkeypatch):
    """NEMO_EVAL_TASKS_PATH folders are mounted read-only at the same paths and passed on."""
    tasks = tmp_path / "my-tasks"
    tasks.mkdir()
    (tasks / "mine.jsonl").write_text('{"id": 1, "prompt": "12+34=", "answer": "46"}\n'
                                      '{"id": 2, "prompt": "50+25=", "answer": "75"}\n')
    (tasks / "my_sums.yaml").write_text("type: exact_match\ndata: mine.jsonl\nmax_tokens: 8\nstop: [';']\n")
    monkeypatch.setenv("NEMO_EVAL_TASKS_PATH", str(tasks))
    run = run_harness(invocation(tmp_path, task="my_sums", model_url=completions_url, timeout_s=600))
    assert run.results.get_score("exact_match", task="my_sums").stats.count == 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_removes_the_container(tmp_path, harness_image, hanging_endpoint, sig):
    """SIGINT or SIGTERM (a CI job's timeout) to a process inside run_harness (docker) must leave
    no container behind."""
    label = f"docker-ctrl-c-{uuid.uuid4().hex[:8]}"
    driver = textwrap.dedent(f"""
        from pytest_nemo_eval.harness.runtime import HarnessInvocation, Mount, run_harness
        run_harness(HarnessInvocation(harness="builtin", task="sample_gsm_arith", model_id="m", runtime="docker",
                    model_url={hanging_endpoint!r}, output_dir={str(tmp_path / "out")!r}, log_prefix={label!r}))
    """)
    process = subprocess.Popen([sys.executable, "-c", driver], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not leftover_containers(label) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert leftover_containers(label), "the container never started"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert ("KeyboardInterrupt" if sig == signal.SIGINT else "TerminatedBySignal: signal SIGTERM") in stderr
    assert leftover_containers(label) == []


def test_logged_docker_run_line_reproduces_the_run_when_pasted(tmp_path, harness_image, completions_url,
                                                              monkeypatch):
    """The `$ docker run ...` line carries mounts (a suite mount at another path, with a space),
    environment by NAME, user and init; pasted into a shell it produces the same samples."""
    tasks = tmp_path / "my-tasks"
    tasks.mkdir()
    (tasks / "mine.jsonl").write_text('{"id": 1, "prompt": "12+34=", "answer": "46"}\n'
                                      '{"id": 2, "prompt": "50+25=", "answer": "75"}\n')
    (tasks / "my_sums.yaml").write_text("type: exact_match\ndata: mine.jsonl\nmax_tokens: 8\nstop: [';']\n")
    monkeypatch.setenv("NEMO_EVAL_PASTE_KEY", "sk-pasted-secret")
    inv = invocation(tmp_path, task="my_sums", model_url=completions_url, timeout_s=600,
                     overrides={"task_spec": "/mnt/my tasks/my_sums.yaml",
                                "target.api_endpoint.api_key_name": "NEMO_EVAL_PASTE_KEY"},
                     mounts=[Mount(host=tasks, container="/mnt/my tasks")])
    run = run_harness(inv)
    log = run.log_path.read_text()
    assert "sk-pasted-secret" not in log
    line = next(text[2:] for text in log.splitlines() if text.startswith("$ docker run "))
    assert line == run.command_line
    assert f"-v '{tasks}:/mnt/my tasks:ro'" in line and " -e NEMO_EVAL_PASTE_KEY " in line
    assert " --init " in line and f"--user {os.getuid()}:{os.getgid()}" in line
    samples = run.output_dir / "samples_my_sums.jsonl"
    first = samples.read_text()
    samples.unlink()
    (run.output_dir / "results.yml").unlink()
    pasted = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=600)
    assert pasted.returncode == 0, pasted.stdout[-2000:] + pasted.stderr[-2000:]
    assert samples.read_text() == first and first.count("\n") == 2
    assert (run.output_dir / "results.yml").is_file()
    assert leftover_containers(inv.log_prefix) == []  # --rm
