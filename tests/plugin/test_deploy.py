"""The plugin deploys the checkpoint itself: once per run, also under `-n 2`, and
always tears it down (also after Ctrl-C). These are the only plugin tests that
deploy; the others share the `demo_deployment` server."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from .inner_run import REPO, junit_cases, junit_suite_properties

SMOKE_LIMIT = "10"


def deployments(out_dir) -> list[dict]:
    log = out_dir / "deployments.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def assert_down(url: str) -> None:
    try:
        requests.get(f"{url}/v1/models", timeout=5)
    except requests.ConnectionError:
        return
    raise AssertionError(f"deployment {url} still answers after the run")


def test_xdist_deploys_once_and_workers_share_it(run_inner, pytester, demo_checkpoint):
    shutil.copy(REPO / "suites" / "smoke.yaml", pytester.path / "smoke.yaml")
    result = run_inner("smoke.yaml", "--nemo-checkpoint=demo", "-n", "2", "-v",
                       f"--nemo-limit-samples={SMOKE_LIMIT}", subprocess=True)
    result.assert_outcomes(passed=6)  # the smoke suite's six benchmarks
    output = result.stdout.str()
    assert re.search(r"\[gw0\].* PASSED", output) and re.search(r"\[gw1\].* PASSED", output)  # both workers ran some
    (deployment,) = deployments(pytester.path / "nemo-out")  # exactly one deployment line
    suite_props = junit_suite_properties(pytester.path / "junit.xml")
    assert suite_props["nemo.deployments"] == "1"
    assert suite_props["nemo.checkpoint"] == str(demo_checkpoint)
    assert len(suite_props["nemo.checkpoint_sha256"]) == 64
    cases = junit_cases(pytester.path / "junit.xml")
    assert {status for status, _ in cases.values()} == {"passed"} and len(cases) == 6
    for _, props in cases.values():  # properties survive the trip from the workers
        assert props["nemo.samples"] == SMOKE_LIMIT and "nemo.proxy.requests" in props
        # two workers' benchmarks share the server at once; a healthy one needs no retry (they hide faults)
        assert props["nemo.proxy.errors"] == "0" and props["nemo.proxy.retries"] == "0", props
    assert_down(deployment["url"])


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU is visible: the benchmark would run")
def test_a_suite_that_will_skip_entirely_deploys_nothing(run_inner, suite_file, pytester, demo_checkpoint):
    """Skips are decided before the deployment: a GPU-only suite on this CPU machine loads no model."""
    suite_file("gpu_only", """\
        benchmarks:
          - name: needs_gpu
            harness: builtin
            task: demo_addition
            requires: [gpu]
            thresholds: {exact_match: {min: 0}}
    """)
    result = run_inner("gpu_only.yaml", "--nemo-checkpoint=demo", subprocess=True)
    result.assert_outcomes(skipped=1)
    line = next(line for line in result.stdout.lines if "nothing deployed" in line)
    assert "all 1 benchmarks will skip" in line and "needs a GPU" in line, line
    assert deployments(pytester.path / "nemo-out") == []


def _harness_running(processes: list[psutil.Process]) -> bool:
    """A harness process (`... run_eval ...`) is among them."""
    for process in processes:
        try:
            if "run_eval" in process.cmdline():
                return True
        except psutil.Error:  # exited meanwhile
            pass
    return False


@pytest.mark.demo_model  # deploys `--nemo-checkpoint=demo` in an inner run
def test_serial_deploy_is_torn_down_after_ctrl_c(pytester):
    """Ctrl-C while a benchmark runs: the run stops, the deployment and the harness are gone."""
    pytester.path.joinpath("slow.yaml").write_text(
        "defaults: {runtime: local, parallelism: 1}\n"
        "benchmarks:\n  - {name: slow, harness: builtin, task: demo_addition_code}\n"
    )
    out_dir = pytester.path / "nemo-out"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "slow.yaml", "--nemo-checkpoint=demo",
         f"--nemo-output-dir={out_dir}", "--nemo-cache=off"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not deployments(out_dir) or not (out_dir / "runs" / "slow.slow" / "harness.log").exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the benchmark never started"
            time.sleep(0.2)
        # Wait for the event, not a while: the harness process (`... run_eval ...`) runs beside the deployment.
        while not _harness_running(children := psutil.Process(process.pid).children(recursive=True)):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the harness process never started"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, output  # pytest's "interrupted"
    assert "KeyboardInterrupt" in output
    assert_down(deployments(out_dir)[0]["url"])
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"left running after Ctrl-C: {[c.cmdline() for c in alive]}"
