"""Issue 25's truncation case through a real eval-factory harness: lm-eval (nemo-evaluator 0.2.8 + nvidia-lm-eval
26.3, its own venv, `runtime: local`) runs a generative chat task over the demo's thinking questions with thinking
on. With room to think it scores the answer alone (the server moved the thought into `reasoning_content`); with a
token cap inside the thought lm-eval would score the empty answers as wrong, and the run must instead error with
the truncation diagnosis. lm-eval computes the scores; the proxy counts what was cut.
"""

from __future__ import annotations

import os

from tests.plugin.conftest import endpoint, run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests
from tests.plugin.inner_run import junit_cases

from .conftest import REPO

LIMIT = 8
DATA = REPO / "pytest_nemo_eval" / "harness" / "builtin" / "data" / "demo_chat_thinking.jsonl"


def test_lm_eval_chat_task_cut_inside_its_thinking_errors_with_the_diagnosis(
        run_inner, suite_file, pytester, endpoint, eval_factory_bin, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv("PATH", f"{eval_factory_bin}{os.pathsep}{os.environ['PATH']}")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "demo_chat_thinking_lm.yaml").write_text(f"""\
task: demo_chat_thinking_lm
dataset_path: json
dataset_kwargs:
  data_files: {{test: {DATA}}}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
generation_kwargs: {{until: ["<|end|>"], max_gen_toks: 32, do_sample: false}}
metric_list:
  - {{metric: exact_match, aggregation: mean, higher_is_better: true}}
""")

    def benchmark(name: str, max_new_tokens: int) -> str:
        return f"""\
          - name: {name}
            harness: lm-evaluation-harness
            task: demo_chat_thinking_lm
            params: {{config.params.extra.args: "--include_path {tasks}", config.params.temperature: 0,
                      config.params.max_new_tokens: {max_new_tokens}, config.params.parallelism: 2,
                      config.params.request_timeout: 120}}
            thresholds: {{exact_match: {{min: 0.0}}}}
"""
    suite_file("lm_thinking", "defaults: {runtime: local, endpoint_type: chat, "
                              "chat_template_kwargs: {enable_thinking: true}}\nbenchmarks:\n"
               + benchmark("lm_room_to_think", 32) + benchmark("lm_cut_while_thinking", 10))
    result = run_inner("lm_thinking.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}",
                       subprocess=True, timeout=900)
    cases = junit_cases(pytester.path / "junit.xml")
    status, room = cases["lm_room_to_think"]
    assert status == "passed", result.stdout.str()[-4000:]
    assert int(room["nemo.proxy.reasoning_tokens"]) >= LIMIT * len("12+34")  # every reply thought first
    assert room["nemo.proxy.truncated_reasoning"] == "0" and room["nemo.proxy.errors"] == "0"
    assert float(room["nemo.metric.exact_match.value"]) > 0  # lm-eval scored answers, not thoughts

    _, cut = cases["lm_cut_while_thinking"]
    assert cut["nemo.status"] == "error", cut  # lm-eval alone would have reported exact_match 0.0 as a score
    assert cut["nemo.error"].startswith(f"Diagnosis: {LIMIT} of the model's {LIMIT} answers were cut off by the "
                                        "token cap inside their thinking"), cut["nemo.error"]
    assert cut["nemo.proxy.truncated_reasoning"] == str(LIMIT)
