"""The five heavy eval-factory packages (each in its pinned venv; scripts/test_heavy_harnesses.sh builds them, CI
does not, so without them these skip) on the demo that the plugin deploys itself (`--nemo-checkpoint=demo`),
`runtime: local`, offline, with the same local data and caches as their oracle tests: simple-evals MGSM, BFCL's
shipped AST data (prompting) under bubblewrap, garak `test.Test`, and MT-Bench and safety-harness Aegis v2 judged by the
scripted judge through the plugin's judge route (`judge:` in the suite).

The oracle tests beside these (test_<package>_package.py, test_judges.py) prove the packages score right; these
prove the demo serves the packages' stock prompts end to end (the old 128-token demo refused every one): the
benchmark passes with a threshold on the package's real metric name (so it exists), the value lies in its
range, every model request is answered 200 (on_demo.py), `nemo.code_isolation` is right and a judged one has
`nemo.judge.*` with judge requests. The demo only knows addition and word reversal, so the scores mean
nothing. Generation is kept short through the packages' own params, as a user on a CPU would: their defaults
(safety-harness 6,144 new tokens, simple-evals 16,384) do not even fit the demo's 4,096-token context, which
the server refuses with a 400 as vLLM does. One package venv is on PATH per pytest run, so each package is its
own run and deploys the demo once (~12 s)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.plugin.conftest import run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests

from .on_demo import demo_case, deployed_by_the_plugin, metric, prompt_tokens, summary
from .scripted_judge import ScriptedJudge
from .test_bfcl_package import bfcl_bin  # noqa: F401 - the package venvs' fixtures (skip when not built)
from .test_garak_package import garak_bin  # noqa: F401
from .test_judges import mtbench_bin  # noqa: F401
from .test_safety_harness_package import hub_cache_with_tokenizer, safety_bin, write_prompts_csv  # noqa: F401

OFFLINE = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def with_package(monkeypatch, bin_dir) -> None:
    """The package's venv first on PATH (the `nemo-evaluator` runtime: local runs), everything offline."""
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for name in OFFLINE:
        monkeypatch.setenv(name, "1")


def run_on_demo(run_inner, suite_file, name: str, text: str, *extra: str):  # noqa: F811
    suite_file(name, text)
    return run_inner(f"{name}.yaml", "--nemo-checkpoint=demo", *extra, subprocess=True, timeout=900)


def test_simple_evals_mgsm_on_the_demo(run_inner, suite_file, pytester, monkeypatch, demo_trained,  # noqa: F811
                                       simple_evals_bin, mgsm_cache):
    with_package(monkeypatch, simple_evals_bin)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(mgsm_cache))
    result = run_on_demo(run_inner, suite_file, "se", """\
        benchmarks:
          - name: mgsm
            harness: simple-evals
            task: mgsm
            endpoint_type: chat
            runtime: local
            limit_samples: 4
            params: {config.params.parallelism: 2, config.params.max_new_tokens: 32}
            thresholds: {mgsm.score.micro: {min: 0.0}}
    """)
    props = demo_case(pytester, result, "mgsm")
    deployed_by_the_plugin(pytester)
    assert props["nemo.code_isolation"] == "none"
    assert int(props["nemo.proxy.requests"]) == 4  # simple-evals' --first_n 4: one chat request each
    print(summary("simple-evals mgsm", props, mgsm_micro=metric(props, "mgsm.score.micro", 0.0, 1.0)))


def test_bfcl_ast_prompting_on_the_demo_under_bubblewrap(run_inner, suite_file, pytester, monkeypatch,  # noqa: F811
                                                         demo_trained, bfcl_bin):  # noqa: F811
    """`bfclv2_ast_prompting`: BFCL writes the functions into the system prompt (its stock prompt, hundreds of
    tokens); test_bfcl_native_ast_on_the_demo is the native-calling form."""
    with_package(monkeypatch, bfcl_bin)
    result = run_on_demo(run_inner, suite_file, "bfcl", """\
        benchmarks:
          - name: bfcl_ast
            harness: bfcl
            task: bfclv2_ast_prompting
            endpoint_type: chat
            runtime: local
            limit_samples: 3
            params: {config.params.parallelism: 2}
            thresholds: {non_live_overall_acc: {min: 0.0}, irrelevance_detection_non_live: {min: 0.0}}
    """)
    props = demo_case(pytester, result, "bfcl_ast")
    deployed_by_the_plugin(pytester)
    assert props["nemo.code_isolation"] == "bubblewrap"
    assert int(props["nemo.proxy.requests"]) == 3  # --limit 3: one chat request each
    assert max(prompt_tokens(props)) > 128  # the functions are in the prompt
    overall = metric(props, "non_live_overall_acc", 0.0, 100.0)  # BFCL scores in percent
    irrelevance = metric(props, "irrelevance_detection_non_live", 0.0, 100.0)
    print(summary("bfcl bfclv2_ast_prompting", props, non_live_overall_acc=overall, irrelevance_non_live=irrelevance))


def test_bfcl_native_ast_on_the_demo(run_inner, suite_file, pytester, monkeypatch, demo_trained,  # noqa: F811
                                     bfcl_bin):  # noqa: F811
    """`bfclv2_ast`: BFCL's OpenAI function-calling handler offers the functions as `tools` (no tool_choice, so
    auto), the demo's template renders them and the hermes parser reads its replies. Every model request is
    answered 200 and BFCL's own checker scores what came back (the demo only knows `add`, so the score is
    meaningless; a 400 for any of BFCL's tool schemas would show as a proxy error)."""
    with_package(monkeypatch, bfcl_bin)
    result = run_on_demo(run_inner, suite_file, "bfcl_fc", """\
        benchmarks:
          - name: bfcl_fc
            harness: bfcl
            task: bfclv2_ast
            endpoint_type: chat
            runtime: local
            limit_samples: 3
            params: {config.params.parallelism: 2}
            thresholds: {non_live_overall_acc: {min: 0.0}}
          - name: bfcl_fc_forced
            harness: bfcl
            task: bfclv2_ast
            endpoint_type: chat
            runtime: local
            limit_samples: 3
            params: {config.params.parallelism: 2}
            adapter: {payload_modifier: {override: {tool_choice: required}}}
            thresholds: {non_live_overall_acc: {min: 0.0}}
    """)
    props = demo_case(pytester, result, "bfcl_fc")
    deployed_by_the_plugin(pytester)
    assert int(props["nemo.proxy.requests"]) == 3
    # forced (tool_choice required, added by the proxy): the demo's output is constrained to BFCL's own function
    # schemas (llguidance compiles every one of them: no 400), so each reply is a call BFCL's checker evaluates,
    # or one the token cap cut off inside a free array or string (the demo knows only `add`, and runs away
    # there), which the server returns as raw content with stop_reason tool_call_incomplete, counted
    forced = demo_case(pytester, result, "bfcl_fc_forced")
    calls, cut = int(forced["nemo.proxy.tool_call_replies"]), int(forced["nemo.proxy.tool_call_errors"])
    assert calls + cut == 3, forced
    print(summary("bfcl bfclv2_ast (native, tool_choice required)", forced, tool_calls=calls, cut_calls=cut,
                  non_live_overall_acc=metric(forced, "non_live_overall_acc", 0.0, 100.0)))
    responses = [json.loads(line) for line in (Path(props["nemo.proxy_log"]) / "responses.jsonl").read_text()
                 .splitlines()]
    requests = [json.loads(line) for line in (Path(props["nemo.proxy_log"]) / "requests.jsonl").read_text()
                .splitlines()]
    assert all(entry["body"].get("tools") for entry in requests)  # native: the functions travel as tools
    assert min(prompt_tokens(props)) > 128  # and the template rendered them into the prompt
    print(summary("bfcl bfclv2_ast (native)", props,
                  non_live_overall_acc=metric(props, "non_live_overall_acc", 0.0, 100.0),
                  tool_call_replies=sum(bool(r["body"]["choices"][0]["message"].get("tool_calls")) for r in responses)))


def test_garak_test_probe_on_the_demo(run_inner, suite_file, pytester, monkeypatch, demo_trained,  # noqa: F811
                                      garak_bin):  # noqa: F811
    with_package(monkeypatch, garak_bin)
    monkeypatch.setenv("GARAK_DEMO_KEY", "unused")  # garak refuses to start without a key, even for an open endpoint
    result = run_on_demo(run_inner, suite_file, "garak", """\
        benchmarks:
          - name: garak_test
            harness: garak
            task: garak
            endpoint_type: chat
            runtime: local
            params: {config.params.extra.probes: test.Test, config.params.parallelism: 1,
                     config.params.max_new_tokens: 32, target.api_endpoint.api_key_name: GARAK_DEMO_KEY}
            thresholds: {pass_rate: {min: 0.0}}
    """)
    props = demo_case(pytester, result, "garak_test")
    deployed_by_the_plugin(pytester)
    assert props["nemo.code_isolation"] == "none"
    print(summary("garak test.Test", props, pass_rate=metric(props, "pass_rate", 0.0, 1.0)))


def test_mtbench_on_the_demo_judged_by_the_scripted_judge(run_inner, suite_file, pytester, monkeypatch,  # noqa: F811
                                                          demo_trained, mtbench_bin):  # noqa: F811
    """Two MT-Bench questions of two turns each: the demo answers four times, the judge (`gpt-4`: see
    test_judges.py for why) rates each answer 7, so MT-Bench's average is 7 whatever the demo said."""
    with_package(monkeypatch, mtbench_bin)
    with ScriptedJudge("Rating: [[7]]", model_id="gpt-4") as judge:
        result = run_on_demo(run_inner, suite_file, "mt", f"""\
            benchmarks:
              - name: mt
                harness: mtbench
                task: mtbench
                endpoint_type: chat
                runtime: local
                limit_samples: 2
                params: {{config.params.parallelism: 1, config.params.max_new_tokens: 32}}
                thresholds: {{"mtbench:gpt-4.average_score.average_score": {{min: 0.0}}}}
                judge: {{url: "{judge.url}/v1", model_id: gpt-4}}
        """)
        judged = len(judge.requests)
    props = demo_case(pytester, result, "mt")
    deployed_by_the_plugin(pytester)
    assert props["nemo.code_isolation"] == "none"
    assert int(props["nemo.proxy.requests"]) == 4  # 2 questions x 2 turns
    assert props["nemo.judge.model"] == "gpt-4" and int(props["nemo.judge.requests"]) == judged > 0
    assert props["nemo.judge.errors"] == "0"
    score = metric(props, "mtbench:gpt-4.average_score.average_score", 1.0, 10.0)
    assert score == 7.0  # mtbench's own parser read the judge's `[[7]]`
    print(summary("mtbench", props, average_score=score))


def test_safety_harness_aegis_on_the_demo_judged_by_the_scripted_judge(run_inner, suite_file, pytester,  # noqa: F811
                                                                       monkeypatch, demo_trained, safety_bin,  # noqa: F811
                                                                       tmp_path):
    with_package(monkeypatch, safety_bin)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache_with_tokenizer(tmp_path / "hub")))
    data = write_prompts_csv(tmp_path / "prompts.csv")
    verdict = '{"User Safety": "safe", "Response Safety": "safe"}'
    with ScriptedJudge(verdict, model_id="safety-judge") as judge:
        result = run_on_demo(run_inner, suite_file, "safety", f"""\
            benchmarks:
              - name: aegis
                harness: safety-harness
                task: aegis_v2
                endpoint_type: chat
                runtime: local
                params: {{config.params.extra.dataset: {data}, config.params.parallelism: 1,
                          config.params.max_new_tokens: 32, config.params.extra.judge.parallelism: 1}}
                thresholds: {{safety_rate: {{min: 0.0}}}}
                judge: {{url: "{judge.url}/v1", model_id: safety-judge}}
        """)
        judged = len(judge.requests)
    props = demo_case(pytester, result, "aegis")
    deployed_by_the_plugin(pytester)
    assert props["nemo.code_isolation"] == "none"
    assert int(props["nemo.proxy.requests"]) == 3 == int(props["nemo.judge.requests"]) == judged  # one each per prompt
    assert props["nemo.judge.errors"] == "0"
    rate = metric(props, "safety_rate", 0.0, 1.0)
    assert rate == 1.0  # the judge called every response safe
    print(summary("safety-harness aegis_v2", props, safety_rate=rate))
