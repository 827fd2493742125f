"""The builtin `tool_call` task type against a scripted model that answers with OpenAI-shaped tool calls:
what goes out (messages + tools, no tool_choice), how each kind of reply scores, and results.yml."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from pytest_nemo_eval.harness.builtin.client import EndpointError, ModelClient
from pytest_nemo_eval.harness.builtin.runner import run_task
from pytest_nemo_eval.harness.builtin.sample import GenerationParams
from pytest_nemo_eval.harness.builtin.tasks import ToolCallSpec, find_task
from pytest_nemo_eval.harness.builtin.tool_call import first_call

from .tool_upstream import ToolUpstream

CLI = [sys.executable, "-m", "pytest_nemo_eval.harness.builtin.cli"]


def _records(spec) -> list[dict]:
    return [json.loads(line) for line in spec.data_path().read_text().splitlines() if line.strip()]


def _question(record) -> tuple[int, int]:
    arguments = record["call"]["arguments"]
    return arguments["a"], arguments["b"]


def test_demo_tool_call_task_offers_the_add_tool_and_expects_its_call():
    spec = find_task("builtin.demo_tool_call")
    assert isinstance(spec, ToolCallSpec)
    records = _records(spec)
    assert len(records) == 100
    for record in records:
        (function,) = [t["function"] for t in record["tools"]]
        a, b = _question(record)
        assert record["messages"] == [{"role": "user", "content": f"What is {a} plus {b}?"}]
        assert function["name"] == record["call"]["name"] == "add"
        assert set(function["parameters"]["properties"]) == set(record["call"]["arguments"]) == {"a", "b"}


def test_every_kind_of_reply_scores_as_it_should(tmp_path):
    spec = find_task("builtin.demo_tool_call")
    records = _records(spec)[:12]
    wrong = ["text", "wrong_name", "wrong_arguments", "extra_argument", "bad_json"]
    misbehave = {_question(r): how for r, how in zip(records, wrong)}
    with ToolUpstream(misbehave=misbehave) as upstream:
        client = ModelClient(f"{upstream.url}/v1/chat/completions", "tools", "chat")
        results = run_task(spec, client, output_dir=tmp_path, params=GenerationParams(), limit_samples=12,
                           parallelism=4, log=lambda line: None)
    for request in upstream.requests:  # the record's conversation and tools, tool_choice left to the server
        assert request["tools"] == records[0]["tools"] and "tool_choice" not in request
        assert request["max_tokens"] == spec.max_tokens and request["temperature"] == 0.0
    accuracy = results.get_score("tool_call_accuracy", task="demo_tool_call")
    assert accuracy.value == pytest.approx(7 / 12) and accuracy.stats.count == 12
    assert results.get_score("no_tool_call").value == pytest.approx(1 / 12)
    samples = [json.loads(line) for line in (tmp_path / "samples_demo_tool_call.jsonl").read_text().splitlines()]
    statuses = [s["details"]["status"] for s in samples]
    assert statuses == ["no_tool_call", "wrong_call", "wrong_call", "wrong_call", "bad_arguments"] + ["called"] * 7
    assert [s["scores"]["tool_call_accuracy"] for s in samples] == [0.0] * 5 + [1.0] * 7
    assert samples[0]["response"] == str(sum(_question(records[0])))
    assert json.loads(samples[5]["response"]) == records[5]["call"]


def test_arguments_compare_as_json_values_not_text():
    arguments = '{"b":34,  "a":12}'
    message = {"tool_calls": [{"type": "function", "function": {"name": "add", "arguments": arguments}}]}
    assert first_call(message) == ("add", {"a": 12, "b": 34}, "called")
    assert first_call({"content": "46", "tool_calls": []})[2] == "no_tool_call"
    assert first_call({"content": "46"})[2] == "no_tool_call"


def test_a_completions_endpoint_is_refused_before_any_request(tmp_path):
    spec = find_task("builtin.demo_tool_call")
    client = ModelClient("http://127.0.0.1:9/v1/completions", "m", "completions")
    with pytest.raises(EndpointError, match="need a chat endpoint"):
        run_task(spec, client, output_dir=tmp_path, params=GenerationParams(), limit_samples=1, log=lambda line: None)


def test_cli_writes_nemo_evaluator_results_yml(tmp_path):
    with ToolUpstream() as upstream:
        subprocess.run(
            [*CLI, "run_eval", "--eval_type", "builtin.demo_tool_call", "--model_id", "tools",
             "--model_url", f"{upstream.url}/v1/chat/completions", "--model_type", "chat",
             "--output_dir", str(tmp_path), "--overrides", "config.params.limit_samples=5,parallelism=2"],
            check=True, capture_output=True, text=True, timeout=120,
        )
    metrics = yaml.safe_load((tmp_path / "results.yml").read_text())["results"]["tasks"]["demo_tool_call"]["metrics"]
    score = metrics["tool_call_accuracy"]["scores"]["tool_call_accuracy"]
    assert score["value"] == 1.0 and score["stats"]["count"] == 5
    assert metrics["no_tool_call"]["scores"]["no_tool_call"]["value"] == 0.0
