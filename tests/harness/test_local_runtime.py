"""Local runtime: a harness process started, streamed, timed out, cleaned up; faults become clear errors.

The fault cases use `fake_harness.py` (installed as `nemo-evaluator` on PATH): a
real process that misbehaves on purpose, since a real eval-factory package
would need its dataset hub.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pytest_nemo_eval.harness.errors import (
    HarnessFailed, HarnessTimeout, ResultsError, RuntimeUnavailable, UnknownTask,
)
from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness


def invocation(tmp_path, **overrides) -> HarnessInvocation:
    fields = dict(
        harness="simple-evals", task="fake", model_id="demo", runtime="local",
        model_url="http://127.0.0.1:9/v1/completions", output_dir=tmp_path / "out", log_prefix="bench-x",
    )
    fields.update(overrides)
    return HarnessInvocation(**fields)


def assert_dead(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    with open(f"/proc/{pid}/stat") as handle:  # a zombie awaiting its reaper is dead too
        assert handle.read().split()[2] == "Z", f"process {pid} still running"


def test_good_run_streams_prefixed_lines_and_logs_the_command(tmp_path, fake_harness):
    fake_harness("good")
    lines: list[str] = []
    run = run_harness(invocation(tmp_path, limit_samples=3, parallelism=2), on_log=lines.append)
    assert run.results.get_score("acc").value == pytest.approx(0.75)
    assert run.command[0].endswith("nemo-evaluator") and "--eval_type" in run.command
    assert "config.params.limit_samples=3,config.params.parallelism=2" in run.command
    assert lines[0].startswith("[bench-x] $ ") and "[bench-x] fake harness line 59" in lines
    assert "fake harness: done" in run.log_path.read_text()


def test_nonzero_exit_is_harness_failed_with_log_tail(tmp_path, fake_harness):
    fake_harness("fail")
    with pytest.raises(HarnessFailed, match="exited with status 3") as info:
        run_harness(invocation(tmp_path))
    assert "fake harness: giving up" in str(info.value)


def test_hang_is_killed_with_its_children_at_the_timeout(tmp_path, fake_harness):
    fake_harness("hang")
    with pytest.raises(HarnessTimeout, match="timeout of 10 s") as info:
        run_harness(invocation(tmp_path, timeout_s=10))
    assert "fake harness: hanging" in str(info.value)
    pids = [int(p) for p in (tmp_path / "fake.pids").read_text().split()]
    for pid in pids:
        assert_dead(pid)


@pytest.mark.parametrize("mode, expected", [("no_results", "wrote no results.yml"), ("malformed", "does not match")])
def test_missing_or_malformed_results(tmp_path, fake_harness, mode, expected):
    fake_harness(mode)
    with pytest.raises(ResultsError, match=expected) as info:
        run_harness(invocation(tmp_path))
    assert "fake harness line 59" in str(info.value)


def test_api_key_value_never_reaches_the_log(tmp_path, fake_harness, monkeypatch):
    fake_harness("leak_key")
    monkeypatch.setenv("SECRET_FOR_TEST", "sk-very-secret-value")
    lines: list[str] = []
    run = run_harness(invocation(tmp_path, api_key_env="SECRET_FOR_TEST"), on_log=lines.append)
    assert "target.api_endpoint.api_key_name=SECRET_FOR_TEST" in " ".join(run.command)
    assert "sk-very-secret-value" not in run.log_path.read_text() + "\n".join(lines)
    assert "using key ***" in run.log_path.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_kills_the_harness_process_group(tmp_path, fake_harness, sig):
    """SIGINT or SIGTERM (a CI job's timeout) to a process running run_harness must leave no
    harness process behind."""
    fake_harness("hang")
    driver = textwrap.dedent(f"""
        from pathlib import Path
        from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness
        run_harness(HarnessInvocation(harness="simple-evals", task="fake", model_id="m", runtime="local",
                    model_url="http://127.0.0.1:9/v1/completions", output_dir=Path({str(tmp_path / 'out')!r})))
    """)
    process = subprocess.Popen([sys.executable, "-c", driver], stderr=subprocess.PIPE, text=True)
    pid_file = tmp_path / "fake.pids"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(p) for p in pid_file.read_text().split()]
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    assert ("KeyboardInterrupt" if sig == signal.SIGINT else "TerminatedBySignal: signal SIGTERM") in stderr
    for pid in pids:
        assert_dead(pid)


def test_unknown_builtin_task_fails_before_starting_anything(tmp_path):
    with pytest.raises(UnknownTask, match="Did you mean: builtin.sample_humaneval"):
        run_harness(invocation(tmp_path, harness="builtin", task="sample_humanevl"))
    assert not (tmp_path / "out").exists()


def test_eval_factory_harness_without_nemo_evaluator_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nemo-evaluator anywhere
    with pytest.raises(RuntimeUnavailable, match="nemo-evaluator.*not on PATH.*pip install nvidia-simple-evals"):
        run_harness(invocation(tmp_path))


RECORDED = "ADAPTER_PORT,NEMO_EVALUATOR_TELEMETRY_LEVEL,PYTHONUNBUFFERED,NEMO_EVAL_SUITE_SECRET"


def record(run) -> dict:
    return json.loads((run.output_dir / "fake_record.json").read_text())


def test_concurrent_runs_each_get_their_own_adapter_port(tmp_path, fake_harness, monkeypatch):
    """nemo-evaluator binds ADAPTER_PORT for its adapter server; runs at the same time must never share one."""
    fake_harness("good")
    monkeypatch.setenv("FAKE_HARNESS_RECORD_ENV", RECORDED)
    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = list(pool.map(lambda i: run_harness(invocation(tmp_path, output_dir=tmp_path / f"out{i}")), range(6)))
    ports = [record(run)["env"]["ADAPTER_PORT"] for run in runs]
    assert all(p and p.isdigit() and int(p) > 0 for p in ports) and len(set(ports)) == 6


def test_telemetry_is_off_unless_the_user_set_a_level(tmp_path, fake_harness, monkeypatch):
    fake_harness("good")
    monkeypatch.setenv("FAKE_HARNESS_RECORD_ENV", RECORDED)
    monkeypatch.delenv("NEMO_EVALUATOR_TELEMETRY_LEVEL", raising=False)
    assert record(run_harness(invocation(tmp_path)))["env"]["NEMO_EVALUATOR_TELEMETRY_LEVEL"] == "0"
    monkeypatch.setenv("NEMO_EVALUATOR_TELEMETRY_LEVEL", "1")
    assert record(run_harness(invocation(tmp_path)))["env"]["NEMO_EVALUATOR_TELEMETRY_LEVEL"] == "1"


def test_logged_command_line_reproduces_the_run_when_pasted(tmp_path, fake_harness, monkeypatch):
    """The `$ ...` line, pasted into a shell, runs the same command with the same environment —
    an override holding a space and a quote included; suite env is passed by name, never shown."""
    fake_harness("good")
    monkeypatch.setenv("FAKE_HARNESS_RECORD_ENV", RECORDED)
    monkeypatch.setenv("NEMO_EVAL_SUITE_SECRET", "s3cret-value")
    overrides = {"config.params.extra.args": "--include_path /tmp/my tasks --note it's"}
    lines: list[str] = []
    run = run_harness(invocation(tmp_path, overrides=overrides, env=["NEMO_EVAL_SUITE_SECRET"]), on_log=lines.append)
    first = record(run)
    logged = next(line for line in run.log_path.read_text().splitlines() if line.startswith("$ "))
    assert logged[2:] == run.command_line and "s3cret-value" not in logged
    (run.output_dir / "fake_record.json").unlink()
    subprocess.run(["bash", "-c", logged[2:]], check=True, capture_output=True)
    assert record(run) == first
    assert "config.params.extra.args=--include_path /tmp/my tasks --note it's" in first["argv"][-1]
    assert first["env"]["NEMO_EVAL_SUITE_SECRET"] == "s3cret-value"


def test_unset_suite_env_variable_fails_before_starting(tmp_path, fake_harness, monkeypatch):
    fake_harness("good")
    monkeypatch.delenv("NEMO_EVAL_NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(RuntimeUnavailable, match="NEMO_EVAL_NOT_SET_ANYWHERE.*not set on the host"):
        run_harness(invocation(tmp_path, env=["NEMO_EVAL_NOT_SET_ANYWHERE"]))
    assert not (tmp_path / "out" / "fake_record.json").exists()


def test_missing_lm_eval_harness_names_its_real_pypi_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match="pip install nvidia-lm-eval"):
        run_harness(invocation(tmp_path, harness="lm-evaluation-harness"))


def test_eval_type_uses_the_framework_name_of_the_harness(tmp_path, fake_harness):
    """simple-evals' image is `simple-evals` but its framework.yml says `simple_evals`."""
    fake_harness("good")
    run = run_harness(invocation(tmp_path, harness="simple-evals", task="mmlu_pro"))
    assert run.command[run.command.index("--eval_type") + 1] == "simple_evals.mmlu_pro"


def test_garak_runs_get_an_xdg_cache_each_and_keep_the_users_hf_cache(tmp_path, fake_harness, monkeypatch):
    """garak copies its plugin cache into $XDG_CACHE_HOME/garak and reads it back at start-up: two runs
    at once (CI under -n 2) read each other's half-copied file. Each run gets its own; other harnesses don't."""
    fake_harness("good")
    monkeypatch.setenv("FAKE_HARNESS_RECORD_ENV", "XDG_CACHE_HOME,HF_HOME,TORCH_HOME")
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    seen = {}
    for name, harness in (("a", "garak"), ("b", "garak"), ("c", "simple-evals")):
        out = tmp_path / name
        run = run_harness(invocation(tmp_path, harness=harness, output_dir=out))
        seen[name] = json.loads((out / "fake_record.json").read_text())["env"]
        if harness == "garak":
            assert "a cache of its own in the run directory (two garak runs" in run.log_path.read_text()
    assert seen["a"]["XDG_CACHE_HOME"] == str(tmp_path / "a" / "xdg-cache")
    assert seen["b"]["XDG_CACHE_HOME"] == str(tmp_path / "b" / "xdg-cache")
    for name in ("a", "b"):
        assert seen[name]["HF_HOME"] == str(tmp_path / "user-cache" / "huggingface")
        assert seen[name]["TORCH_HOME"] == str(tmp_path / "user-cache" / "torch")
    assert seen["c"] == {"XDG_CACHE_HOME": str(tmp_path / "user-cache"), "HF_HOME": None, "TORCH_HOME": None}
