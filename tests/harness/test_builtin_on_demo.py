"""The builtin harness, run by the local runtime against the REAL demo deployment.

The demo checkpoint (megatron-core GPT trained on CPU) served by PyTriton
behind the OpenAI front must score far above chance on its held-out tasks,
and the harness must survive code samples that loop or use the network.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pytest_nemo_eval.checkpoint.demo_tasks import DATA_DIR
from pytest_nemo_eval.harness.errors import HarnessFailed
from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness


def run_builtin(tmp_path, url, task, **fields):
    lines: list[str] = []
    inv = HarnessInvocation(
        harness="builtin", task=task, model_id="demo", model_url=url, runtime="local",
        output_dir=tmp_path / task, log_prefix=task, timeout_s=300, **fields,
    )
    return run_harness(inv, on_log=lines.append), lines


def samples(run, task):
    return [json.loads(line) for line in (run.output_dir / f"samples_{task}.jsonl").read_text().splitlines()]


def test_demo_addition_exact_match_far_above_chance(tmp_path, completions_url):
    run, lines = run_builtin(tmp_path, completions_url, "demo_addition", limit_samples=40, parallelism=4)
    score = run.results.get_score("exact_match", task="demo_addition")
    assert score.value > 0.5, f"exact_match {score.value} (chance ~0)"
    p = score.value  # 0/1 scores: stderr of the mean = sqrt(p(1-p)/(n-1))
    assert score.stats.count == 40 and score.stats.stderr == pytest.approx((p * (1 - p) / 39) ** 0.5)
    records = samples(run, "demo_addition")
    assert len(records) == 40 and all({"prompt", "response", "scores"} <= set(r) for r in records)
    assert sum(r["scores"]["exact_match"] for r in records) == pytest.approx(score.value * 40)
    assert any(line.startswith("[demo_addition] task demo_addition: 40/40") for line in lines)


def test_harness_scores_match_direct_requests_to_the_server(tmp_path, completions_url):
    """Independent of how well the demo model is trained: the harness's per-sample responses and
    its score equal what plain greedy requests to the same endpoint give."""
    import requests

    run, _ = run_builtin(tmp_path, completions_url, "demo_addition", limit_samples=20, parallelism=4)
    records = samples(run, "demo_addition")
    correct = 0
    for record in records:
        reply = requests.post(completions_url, json={
            "model": "demo", "prompt": record["prompt"], "max_tokens": 8, "temperature": 0.0, "stop": [";", "\n"],
        }, timeout=60).json()["choices"][0]["text"]
        assert reply == record["response"], record["id"]
        correct += reply.strip() == record["target"]
    assert run.results.get_score("exact_match").value == pytest.approx(correct / len(records))


def test_demo_addition_mc_loglikelihood_far_above_chance(tmp_path, completions_url):
    run, _ = run_builtin(tmp_path, completions_url, "demo_addition_mc", limit_samples=40, parallelism=4)
    acc = run.results.get_score("acc").value
    acc_norm = run.results.get_score("acc_norm").value
    assert acc > 0.6 and acc_norm > 0.6, f"acc {acc}, acc_norm {acc_norm} (chance 0.25)"
    first = samples(run, "demo_addition_mc")[0]
    assert len(first["details"]["loglikelihoods"]) == 4 and all(ll < 0 for ll in first["details"]["loglikelihoods"])


def test_demo_code_and_reversal_run_with_overrides(tmp_path, completions_url):
    code, _ = run_builtin(tmp_path, completions_url, "demo_addition_code", limit_samples=20, parallelism=4)
    assert code.results.get_score("pass@1").value > 0.3
    statuses = {r["details"]["status"] for r in samples(code, "demo_addition_code")}
    assert "passed" in statuses
    # max_tokens=1 cuts every 3-letter reversal short: the override must reach the requests
    rev, _ = run_builtin(tmp_path, completions_url, "demo_reversal", limit_samples=10,
                         overrides={"max_tokens": 1, "temperature": 0.0})
    assert all(len(r["response"]) <= 1 for r in samples(rev, "demo_reversal"))
    assert rev.results.get_score("exact_match").value == 0.0


def test_code_samples_that_loop_or_use_the_network_fail_and_the_run_goes_on(tmp_path, completions_url):
    """The model's completion lands in a comment; each record's test is what misbehaves."""
    rows = [
        {"id": "ok", "test": "def check(candidate):\n    assert candidate() == 1\n"},
        {"id": "loop", "test": "def check(candidate):\n    while True:\n        pass\n"},
        {"id": "net", "test": "def check(candidate):\n    import socket\n    socket.create_connection(('127.0.0.1', 9))\n"},
        {"id": "child-net", "test": "def check(candidate):\n    import subprocess, sys\n"
                                    "    subprocess.run([sys.executable, '-c', 'import urllib.request as u; "
                                    "u.urlopen(\"http://1.1.1.1\", timeout=2)'], check=True)\n"},
    ]
    data = tmp_path / "misbehave.jsonl"
    data.write_text("".join(json.dumps({**r, "prompt": "def f():\n    return 1\n# ", "entry_point": "f"}) + "\n"
                            for r in rows))
    spec = tmp_path / "misbehave.yaml"
    spec.write_text(f"type: code\ndata: {data.name}\nmax_tokens: 4\nstop: [\"\\n\"]\ntimeout_s: 3\n")
    run, _ = run_builtin(tmp_path, completions_url, "misbehave", overrides={"task_spec": str(spec)}, parallelism=4)
    by_id = {r["id"]: r["details"]["status"] for r in samples(run, "misbehave")}
    assert by_id["ok"] == "passed" and by_id["loop"] == "timeout"
    assert by_id["net"] == "failed" and by_id["child-net"] == "failed"
    assert run.results.get_score("pass@1").value == pytest.approx(0.25)


def test_loglikelihood_task_on_a_chat_endpoint_is_a_clear_failure(tmp_path, demo_deployment):
    with pytest.raises(HarnessFailed, match="need a completions endpoint"):
        run_builtin(tmp_path, f"{demo_deployment.url}/v1/chat/completions", "demo_addition_mc",
                    model_type="chat", limit_samples=2)


def test_cli_run_eval_writes_results_yml_for_nemo_evaluator_readers(tmp_path, completions_url):
    """The CLI exactly as an eval-factory runner would call it."""
    out = tmp_path / "cli"
    subprocess.run(
        [sys.executable, "-m", "pytest_nemo_eval.harness.builtin.cli", "run_eval",
         "--eval_type", "builtin.demo_addition", "--model_id", "demo", "--model_url", completions_url,
         "--model_type", "completions", "--output_dir", str(out), "--overrides", "config.params.limit_samples=5"],
        check=True, capture_output=True, text=True,
    )
    import yaml

    document = yaml.safe_load((out / "results.yml").read_text())
    score = document["results"]["tasks"]["demo_addition"]["metrics"]["exact_match"]["scores"]["exact_match"]
    assert score["stats"]["count"] == 5 and 0.0 <= score["value"] <= 1.0


def test_chat_endpoint_generation_matches_direct_chat_requests(tmp_path, demo_deployment):
    """model_type chat: prompts go out as a user message; responses equal direct chat requests."""
    import requests

    chat_url = f"{demo_deployment.url}/v1/chat/completions"
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"id": i, "q": q, "answer": a}) + "\n"
                            for i, (q, a) in enumerate([("12+34", "46"), ("50+25", "75"), ("81+9", "90")])))
    spec = tmp_path / "chat_sums.yaml"
    spec.write_text(f"type: exact_match\ndata: {data.name}\nprompt_template: \"What is {{q}}?\"\n"
                    "extract_regex: \"(-?[0-9]+)\"\nmax_tokens: 8\nstop: [\";\"]\n")
    run, _ = run_builtin(tmp_path, chat_url, "chat_sums", model_type="chat", overrides={"task_spec": str(spec)})
    for record in samples(run, "chat_sums"):
        reply = requests.post(chat_url, json={
            "model": "demo", "messages": [{"role": "user", "content": record["prompt"]}],
            "max_tokens": 8, "temperature": 0.0, "stop": [";"],
        }, timeout=60).json()["choices"][0]["message"]["content"]
        assert record["prompt"].startswith("What is ") and reply == record["response"]
    assert run.results.get_score("exact_match").stats.count == 3


def test_demo_calls_the_offered_tool_through_the_server(tmp_path, demo_deployment):
    """Tools rendered by the checkpoint's template, the model's Hermes call parsed by the server into
    OpenAI's tool_calls, scored by the harness: far above chance (the demo learned the call)."""
    import requests

    chat_url = f"{demo_deployment.url}/v1/chat/completions"
    run, _ = run_builtin(tmp_path, chat_url, "demo_tool_call", model_type="chat", limit_samples=20, parallelism=4)
    assert run.results.get_score("tool_call_accuracy").value >= 0.6  # recipe 8, all 100: 1.00 / 0.80 (seeds 1234 / 7)
    scored = next(r for r in samples(run, "demo_tool_call") if r["details"]["status"] == "called")
    record = next(r for r in map(json.loads, (DATA_DIR / "demo_tool_call.jsonl").read_text().splitlines())
                  if r["id"] == scored["id"])
    reply = requests.post(chat_url, json={"model": "demo", "messages": record["messages"], "tools": record["tools"],
                                          "max_tokens": 96, "temperature": 0.0}, timeout=60).json()["choices"][0]
    assert reply["finish_reason"] == "tool_calls" and reply["message"]["tool_calls"][0]["type"] == "function"
    call = reply["message"]["tool_calls"][0]["function"]
    assert {"name": call["name"], "arguments": json.loads(call["arguments"])} == json.loads(scored["response"])
