"""Model-written code from a real eval-factory harness never runs on the host unguarded.

Real bigcode-evaluation-harness HumanEval (nemo-evaluator 0.2.8 + nvidia-bigcode-eval 26.3 from PyPI, in a
pinned venv of their own) runs through the plugin with `runtime: local`, offline: its `openai_humaneval`
dataset is a local `datasets` cache built from local JSONL. The "model" is hostile (hostile_upstream.py):
its completions try to write, delete and read host files, reach a host listener and kill a host process.

Oracles nobody here wrote: bigcode executes the completions and computes pass@1 (1.0 proves the attack
code ran); the kernel (bwrap's namespaces) decides which attacks reach the host. The unsandboxed run
shows each attack does work against an unguarded host, so the sandboxed run's clean traces mean something.

A judged benchmark that runs model code reaches its judge too: the sandbox relays every endpoint the
harness is given (harness_sandbox.plan_relays). Those tests run judged_code_harness.py (a tiny harness in a
venv of its own) against real servers: a scripted model, a scripted judge, and a third host listener that
must stay out of reach.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from pytest_nemo_eval.harness.harness_sandbox import RelayedEndpoint, harness_sandbox_problem, plan_relays
from pytest_nemo_eval.harness.judge import JUDGE_URL_PARAM
from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness
from tests.adapters.scripted_upstream import ScriptedUpstream

from tests.plugin.conftest import run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests
from tests.plugin.inner_run import junit_cases

from .conftest import HUMANEVAL_PROBLEMS as PROBLEMS
from .hostile_upstream import HostileUpstream, HostTargets
from .scripted_judge import ScriptedJudge

NO_ATTACK_LANDED = {"wrote_outside": False, "deleted_canary": False, "reached_listener": False,
                    "leaked_secret": False, "killed_process": False}

SUITE = """\
benchmarks:
  - name: humaneval_hostile
    harness: bigcode-evaluation-harness
    task: humaneval
    runtime: local
    timeout_s: 600
    params: {config.params.extra.n_samples: 1, config.params.extra.do_sample: false, config.params.temperature: 0,
             config.params.max_new_tokens: 400, config.params.request_timeout: 60, config.params.parallelism: 2}
    thresholds: {pass@1: {min: 1.0}}
  - {name: plain_reversal, harness: builtin, task: demo_reversal, runtime: local, limit_samples: 1}
"""


@pytest.fixture
def hostile(tmp_path):
    targets = HostTargets(tmp_path / "host-files")
    with HostileUpstream(PROBLEMS, targets) as upstream:
        yield upstream, targets
    targets.close()


@pytest.fixture
def offline_bigcode(monkeypatch, bigcode_bin, humaneval_cache):
    monkeypatch.setenv("PATH", f"{bigcode_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(humaneval_cache))
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")


@pytest.mark.parametrize("boundary", ["bubblewrap", "unsandboxed"])
def test_hostile_humaneval_through_bigcode(run_inner, suite_file, pytester, hostile, offline_bigcode,  # noqa: F811
                                           monkeypatch, boundary):
    """bubblewrap: pass@1 = 1.0 (the code ran) and no attack reached the host; JUnit says `bubblewrap`
    (and `none` for the benchmark without model code). unsandboxed (no bwrap, explicit opt-in): every
    attack lands — the test bench is able to see a breach."""
    upstream, targets = hostile
    options = []
    if boundary == "unsandboxed":
        monkeypatch.setenv("NEMO_EVAL_BWRAP", str(pytester.path / "no-bwrap-here"))
        options = ["--nemo-allow-unsandboxed-code"]
    suite_file("code", SUITE)
    result = run_inner("code.yaml", f"--nemo-endpoint={upstream.url}", *options, subprocess=True, timeout=900)
    cases = junit_cases(pytester.path / "junit.xml")
    status, props = cases["humaneval_hostile"]
    log = next((pytester.path / "nemo-out" / "runs").glob("*humaneval_hostile/harness.log")).read_text()
    assert status == "passed", result.stdout.str()[-4000:] + log[-4000:]
    assert float(props["nemo.metric.pass@1.value"]) == 1.0
    assert props["nemo.code_isolation"] == boundary
    assert cases["plain_reversal"][1]["nemo.code_isolation"] == "none"
    humaneval_calls = [c for c in upstream.calls if c.get("max_tokens") == 400]  # not the builtin benchmark's
    assert int(props["nemo.proxy.requests"]) == 3 == len(humaneval_calls)
    if boundary == "bubblewrap":
        assert targets.traces() == NO_ATTACK_LANDED, log[-3000:]
        assert "whole harness runs under bubblewrap" in log and "bwrap --unshare-all" in log
    else:
        assert targets.traces() == {name: True for name in NO_ATTACK_LANDED}


def test_code_benchmark_without_boundary_is_skipped(run_inner, suite_file, pytester, hostile, offline_bigcode,  # noqa: F811
                                                    monkeypatch):
    """No bwrap and no opt-in: SKIPPED with the one-line reason, no request sent, no attack landed."""
    upstream, targets = hostile
    monkeypatch.setenv("NEMO_EVAL_BWRAP", str(pytester.path / "no-bwrap-here"))
    monkeypatch.delenv("NEMO_EVAL_ALLOW_UNSANDBOXED_CODE", raising=False)
    suite_file("code", SUITE)
    result = run_inner("code.yaml", f"--nemo-endpoint={upstream.url}", "-k", "humaneval", subprocess=True,
                       timeout=300)
    assert "model-written code needs a sandbox" in result.stdout.str() and "--nemo-allow-unsandboxed-code" in result.stdout.str()
    assert junit_cases(pytester.path / "junit.xml")["humaneval_hostile"][0] == "skipped"
    assert upstream.calls == [] and targets.traces() == NO_ATTACK_LANDED


def test_hostile_humaneval_in_docker(run_inner, suite_file, pytester, hostile, bigcode_image, bigcode_bin,  # noqa: F811
                                     humaneval_cache, monkeypatch):
    """`runtime: docker`: the container is the boundary. Host files and processes are out of reach; the
    host's loopback is not (`--network host`, as the README says), so the listener is reached — without
    the secret, which the container cannot read."""
    import shutil

    upstream, targets = hostile
    hf_home = pytester.path / "hf-home"
    shutil.copytree(humaneval_cache, hf_home / "datasets")  # the container's HF_HOME is the dataset cache
    monkeypatch.setenv("NEMO_EVAL_DATASET_CACHE", str(hf_home))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    suite_file("code", SUITE.replace("runtime: local\n", f"runtime: docker\n    image: {bigcode_image}\n"
                                     "    env: [HF_DATASETS_OFFLINE, HF_HUB_OFFLINE]\n", 1))
    result = run_inner("code.yaml", f"--nemo-endpoint={upstream.url}", "-k", "humaneval", subprocess=True,
                       timeout=900)
    status, props = junit_cases(pytester.path / "junit.xml")["humaneval_hostile"]
    assert status == "passed", result.stdout.str()[-4000:]
    assert float(props["nemo.metric.pass@1.value"]) == 1.0 and props["nemo.code_isolation"] == "container"
    assert targets.traces() == {**NO_ATTACK_LANDED, "reached_listener": True}


def test_relays_one_listener_per_host_port_at_the_port_the_url_names():
    """Two routes of one proxy share a relay; a privileged port moves up (no capability to bind it inside);
    another host is reached at a loopback port of its own, never colliding with one already relayed."""
    endpoints, inside = plan_relays(["http://127.0.0.1:8000/m/v1/completions", "http://localhost:8000/j/v1/chat",
                                     "http://judge.example:8000/v1", "https://judge.example/v1"])
    assert endpoints == [RelayedEndpoint("127.0.0.1", 8000, 8000), RelayedEndpoint("judge.example", 8000, 8001),
                         RelayedEndpoint("judge.example", 443, 20443)]
    assert inside == ["http://127.0.0.1:8000/m/v1/completions", "http://localhost:8000/j/v1/chat",
                      "http://127.0.0.1:8001/v1", "https://127.0.0.1:20443/v1"]


@pytest.fixture
def third_listener():
    """A host listener on another port: model code in the sandbox must not reach it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0)
        yield listener


def accepted_anything(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
        return True
    except BlockingIOError:
        return False


@pytest.mark.parametrize("boundary", ["bubblewrap", "unsandboxed"])
def test_sandboxed_harness_reaches_its_model_and_its_judge_and_nothing_else(tmp_path, judged_code_harness,
                                                                             third_listener, boundary):
    """Real HTTP from inside bwrap through one relay per endpoint: the scripted model and the scripted judge
    each answer once (the judge's rating is the score); the third listener gets no connection. Unsandboxed
    (the control), the same harness does reach it."""
    problem = harness_sandbox_problem()
    if problem:
        pytest.skip(problem)
    with ScriptedUpstream() as model, ScriptedJudge("Rating: [[7]]") as judge:
        run = run_harness(HarnessInvocation(
            harness="simple-evals", task="humaneval", model_id="m", runtime="local", model_type="completions",
            model_url=f"{model.url}/v1/completions", output_dir=tmp_path / "out",
            code_isolation="bubblewrap" if boundary == "bubblewrap" else "unsandboxed",
            overrides={JUDGE_URL_PARAM: f"{judge.url}/v1/chat/completions",
                       "config.params.extra.forbidden_port": third_listener.getsockname()[1]}))
        model_calls, judge_calls = model.script.calls, len(judge.requests)
    log = run.log_path.read_text()
    assert run.results.get_score("rating").value == 7.0, log[-3000:]
    assert model_calls == 1 and judge_calls == 1
    reached = boundary == "unsandboxed"
    assert run.results.get_score("reached_forbidden").value == float(reached)
    assert accepted_anything(third_listener) is reached
    assert json.loads((run.output_dir / "probe.json").read_text())["judge_url"].endswith("/v1/chat/completions")
    assert ("bwrap --unshare-all" in log) is (boundary == "bubblewrap")
