"""The demo thinks (issue 25): one inner run of the builtin `demo_chat_thinking` task on the real demo deployment,
twice over. With room to think, the answer in `content` is scored while the thought goes to `reasoning_content`,
and the JUnit carries the proxy's reasoning counts. With a token cap inside the thought (`max_tokens: 10`: the demo's
tokens are characters, so it has written `<think>12+` by then) every reply is cut in its thinking, and the benchmark errors with the
truncation diagnosis instead of scoring empty answers.
"""

from __future__ import annotations

from .inner_run import LIMIT, junit_cases


def test_thinking_task_scores_content_and_a_thought_cut_by_the_cap_errors_with_the_diagnosis(
        run_inner, suite_file, pytester, endpoint):
    suite_file("thinking", """\
        defaults: {runtime: local, endpoint_type: chat, chat_template_kwargs: {enable_thinking: true}}
        benchmarks:
          - {name: room_to_think, harness: builtin, task: demo_chat_thinking, thresholds: {exact_match: {min: 0.3}}}
          - {name: cut_while_thinking, harness: builtin, task: demo_chat_thinking, params: {max_tokens: 10},
             thresholds: {exact_match: {min: 0.3}}}
    """)
    result = run_inner("thinking.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}")
    result.assert_outcomes(passed=1, failed=1)
    cases = junit_cases(pytester.path / "junit.xml")

    status, props = cases["room_to_think"]
    assert status == "passed" and props["nemo.metric.exact_match.verdict"] == "pass"
    assert int(props["nemo.proxy.reasoning_tokens"]) >= int(LIMIT) * len("12+34")  # every reply thought first
    assert props["nemo.proxy.truncated_reasoning"] == "0" and props["nemo.proxy.errors"] == "0"

    status, props = cases["cut_while_thinking"]
    assert props["nemo.status"] == "error"
    assert props["nemo.error"].startswith(f"Diagnosis: {LIMIT} of the model's {LIMIT} answers were cut off by the "
                                          "token cap inside their thinking"), props["nemo.error"]
    assert props["nemo.proxy.truncated_reasoning"] == LIMIT
