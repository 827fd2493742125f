"""The demo model's own tool calls, end to end through the real deployment, read by the OpenAI SDK.

The demo learned the `add` tool in its chat form (its template renders tools the Hermes / Qwen2.5 way, so the
server picks the real `hermes` parser): given the tool and "What is 12 plus 34?" it calls add with
{"a": 12, "b": 34}; given the tool's result it answers with it. Its held-out items
(harness/builtin/data/demo_tool_call.jsonl) were never trained on. Thresholds hold for any demo that learned
the task; `required` and a named function constrain the output, so they hold for any model at all, and
jsonschema (not our code) checks the constrained arguments.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import openai
import pytest

DATA = Path(__file__).resolve().parents[2] / "pytest_nemo_eval" / "harness" / "builtin" / "data" / "demo_tool_call.jsonl"
ITEMS = 20
# what any demo that learned the tool clears (recipe 10, 100 held-out items: calls 1.00 / 1.00 and answers from
# the tool's result 1.00 / 0.98 on seeds 1234 / 7; chance ~0.01): the floors of test_demo_accuracy.py
CALL_FLOOR, ANSWER_FLOOR = 0.8, 0.8
# bounded integers: a constrained call always closes within max_tokens, whatever a demo writes
BOUNDED_ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 999},
                                     "b": {"type": "integer", "minimum": 0, "maximum": 999}},
    "required": ["a", "b"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()[:ITEMS]]


@pytest.fixture(scope="module")
def client(demo_deployment) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{demo_deployment.url}/v1", api_key="unused", max_retries=0)


def _calls(message) -> list[tuple[str, dict]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


def test_the_demo_calls_add_with_the_question_s_numbers(client, items):
    right = 0
    for item in items:
        reply = client.chat.completions.create(model="demo", messages=item["messages"], tools=item["tools"],
                                               max_tokens=128, temperature=0)
        choice = reply.choices[0]
        expected = (item["call"]["name"], item["call"]["arguments"])
        if _calls(choice.message) == [expected]:
            right += 1
            assert choice.finish_reason == "tool_calls"
            assert choice.message.tool_calls[0].id.startswith("chatcmpl-tool-")
    assert right / len(items) >= CALL_FLOOR, f"{right}/{len(items)} calls right"


def test_given_the_tool_result_the_demo_answers_with_it(client, items):
    right = 0
    for item in items:
        a, b = item["call"]["arguments"]["a"], item["call"]["arguments"]["b"]
        first = client.chat.completions.create(model="demo", messages=item["messages"], tools=item["tools"],
                                               max_tokens=128, temperature=0)
        message = first.choices[0].message
        if not message.tool_calls:
            continue
        conversation = [*item["messages"], message.model_dump(exclude_none=True),
                        {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": str(a + b)}]
        second = client.chat.completions.create(model="demo", messages=conversation, tools=item["tools"],
                                                max_tokens=16, temperature=0)
        right += second.choices[0].message.content == str(a + b) and not second.choices[0].message.tool_calls
    assert right / len(items) >= ANSWER_FLOOR, f"{right}/{len(items)} answers right"


def test_streamed_calls_rebuild_the_non_streamed_message(client, items):
    item = items[0]
    plain = client.chat.completions.create(model="demo", messages=item["messages"], tools=item["tools"],
                                           max_tokens=128, temperature=0)
    with client.chat.completions.stream(model="demo", messages=item["messages"], tools=item["tools"], max_tokens=128,
                                        temperature=0) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == plain.choices[0].finish_reason
    assert (final.choices[0].message.content or None) == plain.choices[0].message.content
    assert _calls(final.choices[0].message) == _calls(plain.choices[0].message)


@pytest.mark.parametrize("question", ["rev abc=", "What is 12 plus 34?", "Tell me a story."])
def test_a_named_function_constrains_the_arguments_to_its_schema(client, question):
    """Whatever the question (the demo cannot answer the first or the last), the call validates."""
    tool = BOUNDED_ADD
    reply = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": question}], tools=[tool], max_tokens=64, temperature=0,
        tool_choice={"type": "function", "function": {"name": "add"}})
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and len(choice.message.tool_calls) == 1  # OpenAI's and vLLM's answer
    jsonschema.validate(json.loads(choice.message.tool_calls[0].function.arguments), tool["function"]["parameters"])


def test_required_gives_at_least_one_valid_call(client):
    tool = BOUNDED_ADD
    reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "rev abc="}],
                                           tools=[tool], tool_choice="required", parallel_tool_calls=False,
                                           max_tokens=96, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1  # maxItems 1
    for call in choice.message.tool_calls:
        assert call.function.name == "add"
        jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_tool_choice_none_still_renders_the_tools(client, items):
    item = items[0]
    with_tools = client.chat.completions.create(model="demo", messages=item["messages"], tools=item["tools"],
                                                tool_choice="none", max_tokens=4, temperature=0)
    without = client.chat.completions.create(model="demo", messages=item["messages"], max_tokens=4, temperature=0)
    assert with_tools.usage.prompt_tokens > without.usage.prompt_tokens + 100
    assert not with_tools.choices[0].message.tool_calls
