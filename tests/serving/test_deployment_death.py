"""A deployment killed mid-suite (`kill -9` of `nemo-eval deploy` while a harness runs) is noticed at once:
redeployed once and the running benchmark re-run, or — when the redeploy fails too — every remaining
benchmark errors within seconds naming the exit status and the deploy.log tail, with nothing left running.

Inner pytest runs deploy the demo through the plugin (PyTriton; the watch is the same for either backend).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.plugin.inner_run import junit_cases, junit_suite_properties

SUITE = """\
defaults: {runtime: local, parallelism: 1, limit_samples: 40}
benchmarks:
  - {name: first, harness: builtin, task: demo_addition, thresholds: {exact_match: {min: 0.5}}}
  - {name: second, harness: builtin, task: demo_reversal, thresholds: {exact_match: {min: 0.2}}}
  - {name: third, harness: builtin, task: demo_addition_mc, thresholds: {acc: {min: 0.4}}}
"""


def _deploy_process(children: list[psutil.Process]) -> psutil.Process | None:
    for proc in children:
        try:
            command = proc.cmdline()
        except psutil.Error:
            continue
        if "deploy" in command and "--settings-json" in command:
            return proc
    return None


def _harness_running(children: list[psutil.Process]) -> bool:
    for proc in children:
        try:
            if "run_eval" in proc.cmdline():
                return True
        except psutil.Error:
            pass
    return False


def _run_and_kill_the_deployment(workdir: Path, checkpoint: str, before_kill=lambda: None):
    """Run the suite; once the first harness runs, SIGKILL the deployment. -> (returncode, output, kill time,
    end time, every process the run had)."""
    (workdir / "s.yaml").write_text(SUITE)
    out = workdir / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "s.yaml", f"--nemo-checkpoint={checkpoint}",
         f"--nemo-output-dir={out}", "--nemo-cache=off", "-rA", "--junitxml", str(workdir / "junit.xml")],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: set[psutil.Process] = set()
    try:
        deadline = time.monotonic() + 600
        while True:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the first harness never started"
            children = psutil.Process(process.pid).children(recursive=True)
            seen.update(children)
            if _harness_running(children) and _deploy_process(children):
                break
            time.sleep(0.1)
        before_kill()
        _deploy_process(children).send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while process.poll() is None:  # keep collecting: the redeploy's processes must end too
            try:
                seen.update(psutil.Process(process.pid).children(recursive=True))
            except psutil.Error:
                pass
            time.sleep(0.2)
        output = process.stdout.read()
        ended = time.monotonic()
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, output, killed, ended, seen


def _events(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "out" / "deployment-events.jsonl").read_text().splitlines()]


def _left_running(processes) -> list:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_killed_deployment_is_redeployed_once_and_the_running_benchmark_runs_again(pytester, demo_checkpoint):
    code, output, _killed, _ended, seen = _run_and_kill_the_deployment(pytester.path, "demo")
    assert code == 0, output
    assert [e["event"] for e in _events(pytester.path)] == ["died", "redeployed"]
    assert _events(pytester.path)[0]["exit_status"] == -signal.SIGKILL
    assert "benchmarks that were running run again" in output
    cases = {name: status for name, (status, _) in junit_cases(pytester.path / "junit.xml").items()}
    assert set(cases.values()) == {"passed"} and len(cases) == 3, cases
    assert junit_suite_properties(pytester.path / "junit.xml")["nemo.deployments"] == "2"
    assert not _left_running(seen), [p.cmdline() for p in _left_running(seen)]


def test_when_the_redeploy_fails_every_remaining_benchmark_errors_within_seconds(pytester, demo_checkpoint):
    checkpoint = pytester.path / "ckpt"
    shutil.copytree(demo_checkpoint, checkpoint)

    def break_the_checkpoint():  # the redeploy then fails on load, as after a disk or node loss
        shutil.rmtree(checkpoint / "weights")

    code, output, killed, ended, seen = _run_and_kill_the_deployment(pytester.path, str(checkpoint),
                                                                     break_the_checkpoint)
    assert code == 1, output
    events = _events(pytester.path)
    assert [e["event"] for e in events] == ["died", "lost"]
    cases = {name: props["nemo.status"] for name, (_, props) in junit_cases(pytester.path / "junit.xml").items()}
    assert set(cases.values()) == {"error"} and len(cases) == 3, cases  # the running one and every later one
    assert output.count(f"exited with status {-signal.SIGKILL} during the run") >= len(cases), output
    assert "deploy.log, last lines" in output
    # noticed at once: no minutes of retries against a dead server (the kill-to-end time includes the
    # failed redeploy's start and pytest's teardown)
    assert ended - killed < 120, ended - killed
    assert not _left_running(seen), [p.cmdline() for p in _left_running(seen)]
