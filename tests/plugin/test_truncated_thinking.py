"""A reasoning model whose answers the token cap cut off inside their thinking must not pass a gate.

One inner run against the scripted upstream playing a thinking model that splits its reasoning as our
server does (`content: ""`, the partial thought in `reasoning_content`, `finish_reason: "length"`): the
fake eval-factory harness (tests/harness/fake_harness.py as `nemo-evaluator`, a real process) sends 3
chat requests through the real proxy and writes its scores as if the empty answers were answers (as
harnesses do). All 3 cut -> the benchmark errors with the truncation diagnosis, its scores kept as
evidence; 1 of 3 cut under `max_truncated_share: 0.5` -> its scores count. The suite's
`chat_template_kwargs` reach every chat request of its benchmark and the JUnit.
"""

from __future__ import annotations

import json
from pathlib import Path

from pytest_nemo_eval.suite import load_suite
from tests.adapters.scripted_upstream import ScriptedUpstream
from tests.harness.conftest import fake_harness  # noqa: F401 - the fake eval-factory harness on PATH

from .inner_run import junit_cases


def test_answers_cut_off_in_their_thinking_error_the_benchmark_with_a_diagnosis(run_inner, suite_file, pytester,
                                                                                 fake_harness):  # noqa: F811
    suite_file("thinking", """\
        defaults: {runtime: local, endpoint_type: chat, params: {fake_mode: scored_through_errors},
                   chat_template_kwargs: {enable_thinking: true}}
        benchmarks:
          - {name: all_cut, harness: simple-evals, task: mmlu, thresholds: {acc: {min: 0.5}}}
          - {name: one_cut, harness: simple-evals, task: mmlu, thresholds: {acc: {min: 0.5}},
             max_truncated_share: 0.5, chat_template_kwargs: {budget: 64}}
    """)
    with ScriptedUpstream() as upstream:
        # the first benchmark's 3 answers and the second's first are cut inside their thinking (the second's
        # chat_template_kwargs differ, so its requests are not answered from the first one's cached replies)
        upstream.script.update({"reasoning_reply": {"reasoning": "let me think about this", "cut_next": 4}})
        result = run_inner("thinking.yaml", f"--nemo-endpoint={upstream.url}", subprocess=True)
    result.assert_outcomes(failed=1, passed=1)
    cases = junit_cases(pytester.path / "junit.xml")

    status, props = cases["all_cut"]
    assert props["nemo.status"] == "error"
    assert props["nemo.error"].startswith("Diagnosis: 3 of the model's 3 answers were cut off by the token cap "
                                          "inside their thinking"), props["nemo.error"]
    assert "larger max_tokens" in props["nemo.error"] and "enable_thinking: false" in props["nemo.error"]
    assert (props["nemo.proxy.truncated_reasoning"], props["nemo.proxy.generations"]) == ("3", "3")
    assert props["nemo.proxy.truncated_reasoning_share"] == "1"
    assert props["nemo.proxy.empty_generations"] == "3" and props["nemo.proxy.errors"] == "0"
    assert props["nemo.metric.acc.value"] == "0.75" and "nemo.metric.acc.verdict" not in props  # evidence, unjudged
    assert json.loads(props["nemo.chat_template_kwargs"]) == {"enable_thinking": True}
    # the harness's requests reached the model with the suite's chat_template_kwargs
    sent = [json.loads(line)["body"] for line in (Path(props["nemo.proxy_log"]) / "requests.jsonl").read_text().splitlines()]
    assert len(sent) == 3 and all(body["chat_template_kwargs"] == {"enable_thinking": True} for body in sent)

    status, props = cases["one_cut"]
    assert status == "passed" and props["nemo.metric.acc.verdict"] == "pass"
    assert (props["nemo.proxy.truncated_reasoning"], props["nemo.proxy.generations"]) == ("1", "3")
    assert json.loads(props["nemo.chat_template_kwargs"]) == {"budget": 64, "enable_thinking": True}


def test_max_truncated_share_and_chat_template_kwargs_resolve_from_defaults(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("defaults: {max_truncated_share: 0.1, chat_template_kwargs: {enable_thinking: false, a: 1}}\n"
                    "benchmarks:\n"
                    "  - {name: x, harness: builtin, task: t}\n"
                    "  - {name: y, harness: builtin, task: t, max_truncated_share: 0, chat_template_kwargs: {a: 2}}\n")
    x, y = load_suite(path).resolved()
    assert (x.max_truncated_share, x.chat_template_kwargs) == (0.1, {"enable_thinking": False, "a": 1})
    assert (y.max_truncated_share, y.chat_template_kwargs) == (0.0, {"enable_thinking": False, "a": 2})
    path.write_text("benchmarks:\n  - {name: x, harness: builtin, task: t, max_truncated_share: 2}\n")
    try:
        load_suite(path)
    except ValueError as exc:
        assert "max_truncated_share" in str(exc)
    else:
        raise AssertionError("a share above 1 was accepted")
