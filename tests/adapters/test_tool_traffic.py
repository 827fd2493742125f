"""Tool runs through the proxy: `modify_tools`, the cache key and replay, logs and stats of tool calls.

Against the scripted upstream (tests/adapters/scripted_upstream.py), whose `tool_reply` answers chat
requests with tool calls shaped as vLLM sends them (streamed too), or with an unparsable call
(`stop_reason: "tool_call_invalid"`, the raw text in `content`). Replies are read with the OpenAI SDK
where their shape is the point.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletion

from pytest_nemo_eval.adapters import AdapterConfig, ModifyToolsConfig
from pytest_nemo_eval.adapters.interceptors.modify_tools import modify_tools
from pytest_nemo_eval.report.properties import PROXY_FIELDS, to_properties
from pytest_nemo_eval.results import BenchmarkResult
from pytest_nemo_eval.runner.execute import _numbers


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city.",
    "parameters": {"type": "object",
                   "properties": {"city": {"type": "string"}, "session_id": {"type": "string"},
                                  "api_key": {"type": "string", "description": "the weather service's key"}},
                   "required": ["city", "session_id"]}}}
NO_ARGS = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
MESSAGES = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18C"},
]
TWO_CALLS = {"calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'},
                       {"name": "get_weather", "arguments": '{"city": "Oslo"}'}], "content": None}
INVALID = {"calls": [], "content": '<tool_call>{"name": "get_weather", "argu', "stop_reason": "tool_call_invalid"}


def tool_request(**extra) -> dict:
    return {"model": "m", "messages": copy.deepcopy(MESSAGES), "tools": [copy.deepcopy(WEATHER), NO_ARGS], **extra}


def post(http, url: str, body: dict):
    reply = http.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply


def settled(proxy, requests: int, log: Path | None = None):
    """The route's stats once `requests` are recorded (and logged): a stream is counted and logged when
    the server closes it, just after the client read its [DONE]."""
    deadline = time.monotonic() + 30
    while proxy.stats().requests < requests or (log is not None and len(_lines(log)) < requests):
        assert time.monotonic() < deadline, proxy.stats()
        time.sleep(0.01)
    return proxy.stats()


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.is_file() else []


# --- modify_tools -------------------------------------------------------------------------------------------

def test_modify_tools_strips_and_adds_properties_as_nemo_evaluator_does():
    bare = {"name": "bare", "parameters": {"type": "object", "properties": {"session_id": {}, "q": {}}}}
    tools = [copy.deepcopy(WEATHER), NO_ARGS, bare]
    changed, count = modify_tools(tools, ["session_id"], {"reason": {"type": "string"}, "city": {"type": "integer"}})
    weather = changed[0]["function"]["parameters"]
    assert list(weather["properties"]) == ["city", "api_key", "reason"] and weather["required"] == ["city"]
    assert weather["properties"]["city"] == {"type": "string"}  # an existing property is kept
    assert changed[1] == NO_ARGS  # no `properties`: left alone
    assert list(changed[2]["parameters"]["properties"]) == ["q", "reason", "city"]  # a bare function object too
    assert count == 5 and tools[0] == WEATHER  # removed 2 + added 3; the input is not changed


@pytest.mark.parametrize(("config", "problem"), [
    ({"strip": ["x"]}, "modify_tools.strip: Extra inputs are not permitted"),
    ({"strip_properties": "session_id"}, "modify_tools.strip_properties: Input should be a valid list"),
    ({"add_properties": {"reason": "string"}}, "modify_tools.add_properties.reason: Input should be a valid dictionary"),
    ({}, "modify_tools: Value error, modify_tools changes nothing"),
    ({"strip_properties": [""]}, "property names must not be empty"),
])
def test_modify_tools_bad_params_are_config_errors(config, problem):
    with pytest.raises(ValueError, match="Invalid adapter config") as raised:
        AdapterConfig.parse_user({"modify_tools": config})
    assert problem in str(raised.value)
    assert AdapterConfig.parse_user({"modify_tools": {"enabled": False}}).modify_tools == ModifyToolsConfig(enabled=False)


def test_modify_tools_changes_what_the_model_the_cache_and_the_log_see(upstream, start_proxy, http, tmp_path):
    config = AdapterConfig.parse_user({
        "modify_tools": {"strip_properties": ["session_id"], "add_properties": {"reason": {"type": "string"}}},
        "request_logging": {}, "cache": "reuse"})
    proxy = start_proxy(upstream.url, config)
    sent = post(http, proxy.url, tool_request()).json()["received"]
    weather = sent["tools"][0]["function"]["parameters"]
    assert set(weather["properties"]) == {"city", "api_key", "reason"} and weather["required"] == ["city"]
    assert sent["tools"][1] == NO_ARGS and sent["messages"] == MESSAGES
    logged = json.loads((tmp_path / "logs" / "default" / "requests.jsonl").read_text().splitlines()[0])
    assert logged["body"]["tools"] == sent["tools"]  # as sent upstream, the `api_key` property's schema included
    # a request whose tools differ only in what modify_tools strips is the same request to the model: a hit
    variant = tool_request()
    variant["tools"][0]["function"]["parameters"]["properties"]["session_id"]["description"] = "ignored"
    post(http, proxy.url, variant)
    assert upstream.script.calls == 1 and proxy.stats().cache_hits == 1


# --- the cache key --------------------------------------------------------------------------------------------

def _variants() -> dict[str, dict]:
    def message_args(body):
        body["messages"][1]["tool_calls"][0]["function"]["arguments"] = '{"city": "Oslo"}'

    def tool_call_id(body):
        body["messages"][2]["tool_call_id"] = "call_2"

    def description(body):
        body["tools"][0]["function"]["description"] = "Weather of a town."

    edits = {
        "tools": lambda b: b.update(tools=[WEATHER]),
        "tool description": description,
        "tool_choice": lambda b: b.update(tool_choice="required"),
        "named tool_choice": lambda b: b.update(tool_choice={"type": "function", "function": {"name": "now"}}),
        "parallel_tool_calls": lambda b: b.update(parallel_tool_calls=False),
        "response_format": lambda b: b.update(response_format={"type": "json_object"}),
        "chat_template_kwargs": lambda b: b.update(chat_template_kwargs={"enable_thinking": False}),
        "message tool_calls": message_args,
        "tool_call_id": tool_call_id,
    }
    variants = {}
    for name, edit in edits.items():
        body = tool_request()
        edit(body)
        variants[name] = body
    return variants


def test_the_cache_key_covers_every_tool_field(upstream, start_proxy, http):
    """The key hashes the whole body canonically: each field a tool run sends makes its own entry,
    and the same request with its keys in another order is a hit."""
    proxy = start_proxy(upstream.url, AdapterConfig(cache="reuse"))
    post(http, proxy.url, tool_request())
    reordered = dict(reversed(list(tool_request().items())))
    reordered["tools"] = [dict(reversed(list(t.items()))) for t in reordered["tools"]]
    post(http, proxy.url, reordered)
    assert upstream.script.calls == 1
    for calls, (name, body) in enumerate(_variants().items(), start=2):
        post(http, proxy.url, body)
        assert upstream.script.calls == calls, f"a request differing in {name} was answered from the cache"
        post(http, proxy.url, body)
        assert upstream.script.calls == calls, f"a repeated request differing in {name} missed the cache"


# --- replies with tool calls: replay, streaming, stats, logs --------------------------------------------------

def test_a_cached_tool_call_reply_replays_byte_for_byte(upstream, start_proxy, http):
    upstream.script.tool_reply = TWO_CALLS
    proxy = start_proxy(upstream.url, AdapterConfig(cache="reuse"))
    first = post(http, proxy.url, tool_request())
    assert first.content == upstream.script.last_reply  # relayed unchanged
    again = post(http, proxy.url, tool_request())
    assert again.content == first.content and again.headers["Content-Type"] == first.headers["Content-Type"]
    assert upstream.script.calls == 1
    reply = ChatCompletion.model_validate_json(again.content)  # the OpenAI SDK's own model of a chat reply
    assert reply.choices[0].finish_reason == "tool_calls" and reply.choices[0].message.content is None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in reply.choices[0].message.tool_calls] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]
    client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="unused", max_retries=0)
    sdk = client.chat.completions.create(**tool_request())
    assert sdk.choices[0].message.tool_calls[1].id == reply.choices[0].message.tool_calls[1].id
    stats = proxy.stats()
    assert (stats.cache_hits, stats.tool_call_replies, stats.tool_calls, stats.tool_call_errors) == (2, 3, 6, 0)


def test_a_streamed_tool_call_is_relayed_as_sent_never_cached_and_logged_whole(upstream, start_proxy, http, tmp_path):
    upstream.script.tool_reply = {**TWO_CALLS, "content": "Let me check."}
    proxy = start_proxy(upstream.url, AdapterConfig(cache="reuse", response_logging={}))
    body = tool_request(stream=True, stream_options={"include_usage": True})
    raw = post(http, proxy.url, body)
    assert raw.content == upstream.script.last_reply
    client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="unused", max_retries=0)
    calls: dict[int, dict] = {}
    text = ""
    for chunk in client.chat.completions.create(**body):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(piece.index, {"id": piece.id, "name": piece.function.name, "arguments": ""})
                call["arguments"] += piece.function.arguments or ""
    assert text == "Let me check." and [json.loads(c["arguments"]) for c in calls.values()] == [
        {"city": "Paris"}, {"city": "Oslo"}]
    assert upstream.script.calls == 2  # streams are neither answered from nor stored in the cache
    log = tmp_path / "logs" / "default" / "responses.jsonl"
    stats = settled(proxy, 2, log)
    logged = [json.loads(line) for line in _lines(log)]
    message = logged[-1]["body"]["choices"][0]["message"]
    assert logged[-1]["streamed"] and message["content"] == "Let me check."
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]] == [
        (calls[i]["id"], "get_weather", calls[i]["arguments"]) for i in (0, 1)]
    assert (stats.tool_call_replies, stats.tool_calls, stats.completion_tokens) == (2, 4, 22)


@pytest.mark.parametrize("stream", [False, True])
def test_an_unparsable_tool_call_counts_as_a_tool_call_error(upstream, start_proxy, http, stream):
    upstream.script.tool_reply = INVALID
    proxy = start_proxy(upstream.url, AdapterConfig(cache="reuse"))
    reply = post(http, proxy.url, tool_request(stream=stream))
    if not stream:
        parsed = ChatCompletion.model_validate_json(reply.content)
        assert parsed.choices[0].message.content == INVALID["content"] and not parsed.choices[0].message.tool_calls
        assert parsed.choices[0].model_extra["stop_reason"] == "tool_call_invalid"
    stats = settled(proxy, 1)
    assert (stats.requests, stats.errors, stats.tool_call_replies, stats.tool_calls, stats.tool_call_errors) == (
        1, 0, 0, 0, 1)


def test_the_logs_carry_tools_and_tool_calls_whole(upstream, start_proxy, http, tmp_path):
    upstream.script.tool_reply = TWO_CALLS
    proxy = start_proxy(upstream.url, AdapterConfig(request_logging={}, response_logging={}))
    body = tool_request(tool_choice="auto", api_key="sk-client-secret")
    post(http, proxy.url, body)
    logs = tmp_path / "logs" / "default"
    request = json.loads((logs / "requests.jsonl").read_text())["body"]
    assert request["tools"] == body["tools"] and request["messages"] == body["messages"]  # schemas not redacted
    assert request["api_key"] == "[REDACTED]"  # a secret field of the request itself still is
    response = json.loads((logs / "responses.jsonl").read_text())["body"]
    assert response == json.loads(upstream.script.last_reply)


def test_tool_counters_reach_the_junit_properties(upstream, start_proxy, http):
    """The route's stats become `nemo.proxy.<counter>` properties through report/properties.PROXY_FIELDS
    (runner/execute reads the stats JSON with `_numbers`, report/properties writes them)."""
    proxy = start_proxy(upstream.url, AdapterConfig())
    for reply in (TWO_CALLS, INVALID):
        upstream.script.tool_reply = reply
        post(http, proxy.url, tool_request())
    counters = _numbers(json.loads(proxy.stats().model_dump_json()))
    properties = dict(to_properties(BenchmarkResult(benchmark="s::b", status="passed", proxy=counters)))
    assert {"tool_calls", "tool_call_errors"} <= set(PROXY_FIELDS)
    assert properties["nemo.proxy.tool_calls"] == "2" and properties["nemo.proxy.tool_call_errors"] == "1"
    assert properties["nemo.proxy.tool_call_replies"] == "1"
