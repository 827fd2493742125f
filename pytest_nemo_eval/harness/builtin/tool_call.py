"""Function calling: offer the record's tools in a chat request, score the reply's first tool call.

The reply's `choices[0].message.tool_calls[0].function` must name the expected
function, and its `arguments` (a JSON string, as OpenAI and vLLM send it) must
parse to the expected arguments: compared as JSON values, so key order and
spacing do not matter. tool_call_accuracy is the share of such replies;
no_tool_call the share of replies that made no call at all (answered in text).
"""

from __future__ import annotations

import json
from typing import Any

from .client import ModelClient
from .dataset import DatasetError
from .sample import GenerationParams, SampleOutcome
from .tasks import ToolCallSpec

METRICS = ("tool_call_accuracy", "no_tool_call")


def required_fields(spec: ToolCallSpec) -> list[str]:
    return [spec.messages_field, spec.tools_field, spec.call_field]


def first_call(message: dict[str, Any]) -> tuple[str | None, Any, str]:
    """(name, parsed arguments, status) of the reply's first tool call; status is `called`, `no_tool_call`
    or `bad_arguments` (arguments that are not JSON)."""
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list) or not calls:
        return None, None, "no_tool_call"
    function = (calls[0] or {}).get("function") or {}
    name, arguments = function.get("name"), function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return name, arguments, "bad_arguments"
    return name, arguments, "called"


def score(spec: ToolCallSpec, client: ModelClient, record: dict, params: GenerationParams) -> SampleOutcome:
    messages, tools, expected = record[spec.messages_field], record[spec.tools_field], record[spec.call_field]
    if not isinstance(expected, dict) or "name" not in expected or "arguments" not in expected:
        raise DatasetError(
            f"record {record.get(spec.id_field)!r}: `{spec.call_field}` must be an object "
            f"{{name, arguments}}, got {expected!r}; fix that record."
        )
    message = client.chat_with_tools(
        messages, tools,
        max_tokens=params.max_tokens if params.max_tokens is not None else spec.max_tokens,
        temperature=params.temperature if params.temperature is not None else spec.temperature,
        top_p=params.top_p, seed=params.seed,
    )
    name, arguments, status = first_call(message)
    correct = status == "called" and name == expected["name"] and arguments == expected["arguments"]
    if status == "called" and not correct:
        status = "wrong_call"
    called = {"name": name, "arguments": arguments} if status != "no_tool_call" else None
    return SampleOutcome(
        id=record.get(spec.id_field), prompt=json.dumps(messages, ensure_ascii=False),
        response=json.dumps(called, ensure_ascii=False) if called else (message.get("content") or ""),
        target=expected,
        scores={"tool_call_accuracy": float(correct), "no_tool_call": float(status == "no_tool_call")},
        details={"status": status, "content": message.get("content"),
                 "tool_calls": len(message.get("tool_calls") or [])},
    )
