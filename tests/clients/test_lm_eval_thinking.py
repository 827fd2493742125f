"""lm-evaluation-harness (the real package) scores the demo's thinking chat task as the builtin harness does.

Issue 25's ground truth: lm-eval's chat API model with `think_end_token` (lm-eval PR #3675) and our builtin
`demo_chat_thinking` task, both pointed at one proxy route that adds `chat_template_kwargs: {enable_thinking:
true}` (as a suite's field does). The demo thinks `<think>a+b</think>` first; the server's reasoning parser
(qwen3, picked from the demo's template) moves the thought into `reasoning_content`, so both read the same
`content` sample for sample. The proxy counts the reasoning tokens the server reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pytest_nemo_eval.adapters import ProxyServer
from pytest_nemo_eval.adapters.config import AdapterConfig
from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness

DATA = Path(__file__).resolve().parents[2] / "pytest_nemo_eval" / "harness" / "builtin" / "data" / "demo_chat_thinking.jsonl"
LIMIT = 20
THINKING = {"enable_thinking": True}


@pytest.fixture
def route(base_url, tmp_path):
    with ProxyServer(base_url, log_dir=tmp_path / "proxy-logs") as proxy:
        yield proxy, proxy.register_benchmark("thinking", AdapterConfig(chat_template_kwargs={"kwargs": THINKING}))


def _lm_eval_samples(url: str, model_id: str, folder: Path) -> list[dict]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    data = folder / "thinking.jsonl"
    data.write_text("".join(line + "\n" for line in DATA.read_text().splitlines()[:LIMIT]))
    task = {"task": "demo_chat_thinking", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "doc_to_text": "question", "doc_to_target": "answer", "output_type": "generate_until",
            "generation_kwargs": {"until": [], "max_gen_toks": 32, "do_sample": False, "temperature": 0.0},
            "metric_list": [{"metric": "exact_match"}]}
    (folder / "demo_chat_thinking.yaml").write_text(yaml.safe_dump(task))
    results = simple_evaluate(
        model="local-chat-completions",
        model_args={"base_url": f"{url}/v1/chat/completions", "model": model_id, "num_concurrent": 2,
                    "max_retries": 1, "think_end_token": "</think>"},
        tasks=["demo_chat_thinking"], task_manager=TaskManager(include_path=str(folder)), log_samples=True,
        apply_chat_template=True, bootstrap_iters=0,
    )
    return sorted(results["samples"]["demo_chat_thinking"], key=lambda s: s["doc_id"])


def test_lm_eval_with_think_end_token_scores_the_thinking_task_as_the_builtin_harness(route, model_id, tmp_path):
    proxy, url = route
    run = run_harness(HarnessInvocation(
        harness="builtin", task="demo_chat_thinking", model_id=model_id, runtime="local", timeout_s=300,
        model_url=f"{url}/v1/chat/completions", model_type="chat", output_dir=tmp_path / "builtin",
        log_prefix="thinking", limit_samples=LIMIT, parallelism=2,
    ))
    ours = [json.loads(line) for line in (run.output_dir / "samples_demo_chat_thinking.jsonl").read_text().splitlines()]
    theirs = _lm_eval_samples(url, model_id, tmp_path)
    assert len(ours) == len(theirs) == LIMIT
    for builtin, lm in zip(ours, theirs):
        assert lm["resps"][0][0] == builtin["response"], builtin["id"]
        assert lm["exact_match"] == builtin["scores"]["exact_match"], builtin["id"]
        assert "<think>" not in builtin["response"]  # the thought went to reasoning_content, never scored
    score = sum(s["exact_match"] for s in theirs) / LIMIT
    assert score >= 0.3, f"exact_match {score}"  # recipe 10 on all 100: 1.00 (seed 1234), 0.67 (seed 7)
    stats = proxy.stats("thinking")
    assert stats.errors == 0 and stats.truncated_reasoning == 0
    assert stats.reasoning_tokens >= 2 * LIMIT * len("12+34")  # every reply thought, for lm-eval and for us
