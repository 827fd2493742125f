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
