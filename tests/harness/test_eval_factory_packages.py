"""The real eval-factory packages from PyPI (nemo-evaluator 0.2.8 + nvidia-lm-eval 26.3) as
harnesses of the plugin, against the demo deployment: `runtime: local` from their own venv,
serially and under `-n 2`, and `runtime: docker` from an image built here with the same pins.

Oracles nobody here wrote: nemo-evaluator and lm-eval compute the scores and name the metrics
(`exact_match__first_int` is eval-factory's name for lm-eval's filtered metric); the proxy's
per-route counters prove where each benchmark's requests went (under `-n 2`, two
nemo-evaluator processes used to race for one adapter port and send one benchmark's requests
through the other's route). The tasks read the shipped demo data (no dataset hub here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugin.conftest import endpoint, run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests
from tests.plugin.inner_run import junit_cases

from .conftest import DEMO_DATA, REPO, docker_unreachable_reason, leftover_containers, write_lm_eval_tasks

LIMIT = 12  # samples per benchmark: enough to compare scores, cheap on a CPU
BUILD_IMAGE = REPO / "fixtures" / "harness_image" / "build_image.py"
EVAL_FACTORY_IMAGE = "nemo-eval-lm-evaluation-harness:local"
ABSENT_IMAGE = "nemo-eval-never-built/lm-evaluation-harness:none"


def expected_requests(task: str) -> int:
    """What lm-eval sends for the first LIMIT items: one completion per generation item, one
    loglikelihood request per choice of a multiple-choice item."""
    if task == "demo_addition_lm":
        return LIMIT
    items = [json.loads(line) for line in (DEMO_DATA / "demo_addition_mc.jsonl").read_text().splitlines()[:LIMIT]]
    return sum(len(item["choices"]) for item in items)


def suite_text(tasks, tokenizer, *, runtime: str, extra: str = "") -> str:
    """Two eval-factory benchmarks and the builtin harness on the same items, interleaved so that
    xdist's round-robin start puts the two eval-factory runs on different workers at once."""
    params = (f'config.params.extra.args: "--include_path {tasks}", config.params.temperature: 0, '
              f'config.params.request_timeout: 120')
    return f"""\
defaults: {{runtime: {runtime}, parallelism: 2}}
benchmarks:
  - name: ef_addition
    harness: lm-evaluation-harness
    task: demo_addition_lm
    params: {{{params}}}
    thresholds: {{exact_match__first_int: {{min: 0.0}}}}
{extra}
  - {{name: builtin_addition, harness: builtin, task: demo_addition, runtime: local}}
  - name: ef_addition_mc
    harness: lm-evaluation-harness
    task: demo_addition_mc_lm
    params: {{{params}, config.params.extra.tokenizer: {tokenizer},
              config.params.extra.tokenizer_backend: huggingface}}
    thresholds: {{acc: {{min: 0.0}}}}
{extra}
  - {{name: builtin_addition_mc, harness: builtin, task: demo_addition_mc, runtime: local}}
"""


def check_run(pytester, result) -> dict[str, dict[str, str]]:
    """Every benchmark passed; each eval-factory route got exactly its own benchmark's requests;
    eval-factory's scores equal the builtin harness's on the same items (greedy decoding)."""
    assert result.ret == 0, result.stdout.str()[-6000:]
    cases = {name: props for name, (status, props) in junit_cases(pytester.path / "junit.xml").items()}
    assert set(cases) == {"ef_addition", "builtin_addition", "ef_addition_mc", "builtin_addition_mc"}
    for name, task in (("ef_addition", "demo_addition_lm"), ("ef_addition_mc", "demo_addition_mc_lm")):
        assert int(cases[name]["nemo.proxy.requests"]) == expected_requests(task), (name, cases[name])
        assert cases[name]["nemo.proxy.errors"] == "0"
    ef = float(cases["ef_addition"]["nemo.metric.exact_match__first_int.value"])
    assert ef == pytest.approx(float(cases["builtin_addition"]["nemo.metric.exact_match.value"]))
    acc = float(cases["ef_addition_mc"]["nemo.metric.acc.value"])
    assert acc == pytest.approx(float(cases["builtin_addition_mc"]["nemo.metric.acc.value"]))
    return cases


def adapter_ports(pytester) -> dict[str, int]:
    """The port each eval-factory run's nemo-evaluator adapter server really listened on (its own log)."""
    ports = {}
    for name in ("ef_addition", "ef_addition_mc"):
        (log,) = (pytester.path / "nemo-out" / "runs").glob(f"*.{name}/harness.log")
        text = log.read_text()
        listened = re.search(r"Adapter server started on \S+:(\d+)", text)
        assigned = re.search(r"ADAPTER_PORT=(\d+)", text)
        assert listened and assigned and listened.group(1) == assigned.group(1), text[-3000:]
        assert "[TELEMETRY]" not in text  # off unless the user sets NEMO_EVALUATOR_TELEMETRY_LEVEL
        ports[name] = int(listened.group(1))
    return ports


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_eval_factory_packages_run_locally(run_inner, suite_file, pytester, endpoint, demo_checkpoint,  # noqa: F811
                                          eval_factory_bin, lm_eval_tasks, monkeypatch, xdist):
    """`runtime: local` with the eval-factory venv's bin/ on PATH (its `lm-eval`, not ours); serially
    through `runtime: auto`, which must pick the installed CLI over an image that is not there."""
    monkeypatch.setenv("PATH", f"{eval_factory_bin}{os.pathsep}{os.environ['PATH']}")
    # serially through `runtime: auto` with an image no one has: it must choose the installed CLI
    runtime, extra = ("local", "") if xdist else ("auto", f"    image: {ABSENT_IMAGE}")
    suite_file("ef", suite_text(lm_eval_tasks, demo_checkpoint / "context" / "nemo_tokenizer", runtime=runtime,
                                extra=extra))
    result = run_inner("ef.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}", *xdist,
                       subprocess=True, timeout=900)
    cases = check_run(pytester, result)
    ports = adapter_ports(pytester)
    assert len(set(ports.values())) == 2
    assert cases["ef_addition"]["nemo.runtime"] == "local"
    if not xdist:
        reason = cases["ef_addition"]["nemo.runtime_reason"]
        assert reason.startswith("runtime auto -> local: ") and f"installed at {eval_factory_bin}" in reason
    log = next((pytester.path / "nemo-out" / "runs").glob("*.ef_addition/harness.log")).read_text()
    assert f"PATH={eval_factory_bin}:" in log  # the logged line puts the venv first, as the run did


@pytest.fixture(scope="session")
def eval_factory_image() -> str:
    """An image FROM the project's debootstrap base holding the same pinned packages (cached by content hash)."""
    reason = docker_unreachable_reason()
    if reason:
        pytest.skip(reason)
    build = subprocess.run([sys.executable, str(BUILD_IMAGE), "--eval-factory", "--tag", EVAL_FACTORY_IMAGE],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, f"eval-factory image build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return EVAL_FACTORY_IMAGE


def test_eval_factory_packages_run_in_docker_under_xdist(run_inner, suite_file, pytester, endpoint,  # noqa: F811
                                                        demo_checkpoint, eval_factory_image, tmp_path, monkeypatch):
    """`runtime: docker`, `-n 2`: the containers share the host network, so each needs its own adapter
    port too. Tasks, data and tokenizer reach the container only through the suite's read-only
    `mounts` (at other paths inside), and the suite's `env` passes HF_HUB_OFFLINE by name."""
    data = tmp_path / "data"
    shutil.copytree(DEMO_DATA, data, ignore=shutil.ignore_patterns("*.md", "sample_*"))
    tasks = write_lm_eval_tasks(tmp_path / "tasks", data_dir=Path("/mnt/demo-data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    extra = (f"    image: {eval_factory_image}\n"
             f"    mounts: [{{host: {tasks}, container: /mnt/tasks}}, {{host: {data}, container: /mnt/demo-data}},\n"
             f"             {{host: {demo_checkpoint / 'context'}, container: /mnt/ckpt-context}}]\n"
             f"    env: [HF_HUB_OFFLINE]")
    suite_file("ef", suite_text("/mnt/tasks", "/mnt/ckpt-context/nemo_tokenizer", runtime="docker", extra=extra))
    result = run_inner("ef.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}", "-n", "2",
                       subprocess=True, timeout=1200)
    cases = check_run(pytester, result)
    assert cases["ef_addition"]["nemo.runtime"] == "docker" and cases["ef_addition"]["nemo.image"] == EVAL_FACTORY_IMAGE
    assert len(set(adapter_ports(pytester).values())) == 2
    log = next((pytester.path / "nemo-out" / "runs").glob("*.ef_addition/harness.log")).read_text()
    assert f"-v {tasks}:/mnt/tasks:ro" in log and " -e HF_HUB_OFFLINE " in log
    for name in ("ef_addition", "ef_addition_mc"):
        assert leftover_containers(f"[{name}] ") == []
