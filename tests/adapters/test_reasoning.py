"""Reasoning models through the proxy, against the scripted upstream playing a thinking model: the
`reasoning` split (only where the server did not split), thoughts cut off by the token cap counted,
NeMo Evaluator's `finish_reason` relabel and empty generations, `reasoning_replay` across turns, and
`chat_template_kwargs` — plain and streamed replies."""

from __future__ import annotations

import json
import time

import pytest

from pytest_nemo_eval.adapters import AdapterConfig
from pytest_nemo_eval.report.properties import PROXY_FIELDS, to_properties
from pytest_nemo_eval.results import BenchmarkResult

from .openai_calls import chat, completion

Q = [{"role": "user", "content": "12+34?"}]
THOUGHT, ANSWER = "12+34", "46"


def _stats_after(proxy, requests: int, route: str | None = None):
    """A streamed request is counted when the proxy closes the stream, just after the client read it."""
    deadline = time.monotonic() + 30
    while proxy.stats(route).requests < requests:
        assert time.monotonic() < deadline, proxy.stats(route)
        time.sleep(0.01)
    return proxy.stats(route)


def _streamed_message(reply) -> dict:
    message: dict = {"content": "", "reasoning_content": ""}
    for line in reply.iter_lines():
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:])["choices"]:
                delta = choice.get("delta") or {}
                for key in ("content", "reasoning_content"):
                    message[key] += delta.get(key) or ""
                message["finish_reason"] = choice.get("finish_reason") or message.get("finish_reason")
    return message


@pytest.mark.parametrize("config", [AdapterConfig(), AdapterConfig(reasoning={})], ids=["no-reasoning-key", "reasoning"])
def test_a_servers_split_is_left_as_it_is_and_counted_with_or_without_the_interceptor(upstream, start_proxy, http,
                                                                                        config):
    upstream.script.update({"reasoning_reply": {"cut_next": 1}})
    proxy = start_proxy(upstream.url, config)
    cut = chat(http, proxy.url, Q, max_tokens=64)
    assert cut.content == upstream.script.last_reply  # the upstream's bytes: nothing to split, nothing relabeled
    assert cut.json()["choices"][0] | {} == {"index": 0, "finish_reason": "length", "message": {
        "role": "assistant", "content": "", "reasoning_content": "12", "reasoning": "12"}}
    whole = chat(http, proxy.url, Q, max_tokens=64)
    assert whole.content == upstream.script.last_reply
    assert whole.json()["choices"][0]["message"]["content"] == ANSWER
    stats = proxy.stats()
    # reasoning tokens: the server's usage.completion_tokens_details (2 of the cut thought, 5 of the whole)
    assert (stats.generations, stats.truncated_reasoning, stats.reasoning_tokens) == (2, 1, 2 + 5)
    assert stats.truncated_reasoning_share == 0.5 and stats.empty_generations == 1


def test_an_endpoint_that_does_not_split_is_split_by_the_interceptor(upstream, start_proxy, http):
    """`<think>12+34</think>46` -> content 46, reasoning_content 12+34; `<think>12` cut by the cap -> content ""
    (never scored as an answer), the partial thought kept; tokens estimated by character share."""
    upstream.script.update({"reasoning_reply": {"split": False, "cut_next": 1}})
    proxy = start_proxy(upstream.url, AdapterConfig(reasoning={}))
    cut = chat(http, proxy.url, Q).json()["choices"][0]
    assert cut["finish_reason"] == "length" and cut["message"]["content"] == ""
    assert cut["message"]["reasoning_content"] == "12"
    whole = chat(http, proxy.url, Q).json()["choices"][0]["message"]
    assert (whole["content"], whole["reasoning_content"]) == (ANSWER, THOUGHT)
    text = completion(http, proxy.url, "12+34=").json()["choices"][0]
    assert (text["text"], text["reasoning_content"]) == (ANSWER, THOUGHT)
    stats = proxy.stats()
    # the scripted model's tokens are characters: `<think>12` is 9 reasoning tokens, `<think>12+34</think>` 20
    assert (stats.generations, stats.truncated_reasoning, stats.reasoning_tokens) == (3, 1, 9 + 20 + 20)


def test_an_unclosed_think_is_cut_only_at_the_cap_and_counted_even_without_the_interceptor(upstream, start_proxy, http):
    upstream.script.update({"reasoning_reply": {"split": False, "cut_next": 1}})
    plain = start_proxy(upstream.url)
    assert chat(http, plain.url, Q).json()["choices"][0]["message"]["content"] == "<think>12"  # relayed unchanged
    assert (plain.stats().truncated_reasoning, plain.stats().generations) == (1, 1)
    # an unclosed <think> that the model itself ended (not the cap) is no cut thought: left alone, not counted
    upstream.script.update({"reasoning_reply": {"split": False, "cut_next": 1, "cut_finish_reason": "eos"}})
    split = start_proxy(upstream.url, AdapterConfig(reasoning={}))
    assert chat(http, split.url, Q).json()["choices"][0]["message"]["content"] == "<think>12"
    assert split.stats().truncated_reasoning == 0


def test_vllm_newer_reasoning_field_is_copied_to_reasoning_content(upstream, start_proxy, http):
    upstream.script.update({"reasoning_reply": {"fields": ["reasoning"]}})
    proxy = start_proxy(upstream.url, AdapterConfig(reasoning={}))
    message = chat(http, proxy.url, Q).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": ANSWER, "reasoning": THOUGHT, "reasoning_content": THOUGHT}


def test_streams_are_relayed_unchanged_and_counted_when_they_end(upstream, start_proxy, http):
    upstream.script.update({"reasoning_reply": {"cut_next": 1}})
    proxy = start_proxy(upstream.url, AdapterConfig(reasoning={}, response_logging={}))
    usage = {"stream": True, "stream_options": {"include_usage": True}}
    cut = http.post(f"{proxy.url}/v1/chat/completions", json={"messages": Q, **usage}, stream=True, timeout=30)
    assert _streamed_message(cut) == {"content": "", "reasoning_content": "12", "finish_reason": "length"}
    whole = http.post(f"{proxy.url}/v1/chat/completions", json={"messages": Q, **usage}, stream=True, timeout=30)
    assert _streamed_message(whole) == {"content": ANSWER, "reasoning_content": THOUGHT, "finish_reason": "stop"}
    stats = _stats_after(proxy, 2)
    assert (stats.generations, stats.truncated_reasoning, stats.reasoning_tokens) == (2, 1, 2 + 5)

    # an endpoint that does not split, streaming <think> in the content: relayed as sent, and the reasoning
    # interceptor's count of what it would split off is the route's reasoning tokens (no usage details)
    upstream.script.update({"reasoning_reply": {"split": False, "cut_next": 1}})
    unsplit = start_proxy(upstream.url, AdapterConfig(reasoning={}))
    for expected in ("<think>12", f"<think>{THOUGHT}</think>{ANSWER}"):
        reply = http.post(f"{unsplit.url}/v1/chat/completions", json={"messages": Q, **usage}, timeout=30)
        assert reply.content == upstream.script.last_reply and expected.encode()[-3:] in reply.content
    stats = _stats_after(unsplit, 2)
    assert (stats.generations, stats.truncated_reasoning, stats.reasoning_tokens) == (2, 1, 9 + 20)


def test_finish_reason_relabels_a_stop_at_the_cap_and_counts_empty_generations(upstream, start_proxy, http):
    """A server that says "stop" when the cap cut the thought (NeMo Evaluator's case): relabeled "length" when
    the generated tokens reached max_completion_tokens (preferred) or max_tokens, so the cut is counted."""
    upstream.script.update({"reasoning_reply": {"cut_next": 2, "cut_finish_reason": "stop"}})
    proxy = start_proxy(upstream.url)  # finish_reason is on by default
    cut = chat(http, proxy.url, Q, max_tokens=99, max_completion_tokens=2).json()["choices"][0]  # 2 tokens generated
    assert cut["finish_reason"] == "length"
    below_cap = chat(http, proxy.url, Q, max_tokens=3).json()["choices"][0]
    assert below_cap["finish_reason"] == "stop"  # 2 < 3: a model that stopped, left alone
    stats = proxy.stats()
    assert (stats.finish_reason_relabeled, stats.empty_generations, stats.truncated_reasoning) == (1, 2, 1)
    whole = chat(http, proxy.url, Q, max_tokens=64).json()["choices"][0]
    assert whole["finish_reason"] == "stop" and proxy.stats().empty_generations == 2

    upstream.script.update({"reasoning_reply": {"cut_next": 1, "cut_finish_reason": "stop"}})
    off = start_proxy(upstream.url, AdapterConfig(finish_reason={"enabled": False}))
    assert chat(http, off.url, Q, max_tokens=2).json()["choices"][0]["finish_reason"] == "stop"
    assert (off.stats().finish_reason_relabeled, off.stats().empty_generations) == (0, 0)


def test_finish_reason_empty_means_no_text_and_no_tool_call(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url)
    upstream.script.update({"tool_reply": {"calls": [{"name": "add", "arguments": "{}"}], "content": None}})
    chat(http, proxy.url, Q)
    upstream.script.update({"tool_reply": None, "reasoning_reply": {"split": False, "content": " "}})
    chat(http, proxy.url, Q)  # `<think>12+34</think> `: only a thought
    streamed = http.post(f"{proxy.url}/v1/chat/completions", json={"messages": Q, "stream": True}, timeout=30)
    assert streamed.status_code == 200
    stats = _stats_after(proxy, 3)
    assert stats.empty_generations == 2 and stats.finish_reason_relabeled == 0


def test_reasoning_replay_puts_the_dropped_thought_back_into_its_own_conversation(upstream, start_proxy, http):
    upstream.script.update({"reasoning_reply": {}})
    proxy = start_proxy(upstream.url, AdapterConfig(reasoning_replay={}, cache="reuse"))
    first = chat(http, proxy.url, Q).json()["choices"][0]["message"]
    assert first["reasoning_content"] == THOUGHT
    again = [*Q, {"role": "assistant", "content": first["content"]}, {"role": "user", "content": "and +1?"}]
    sent = chat(http, proxy.url, again).json()["received"]["messages"]
    assert sent[1] == {"role": "assistant", "content": ANSWER, "reasoning_content": THOUGHT}
    # the same answer in another conversation is another turn: nothing put back
    other = [{"role": "user", "content": "40+6?"}, {"role": "assistant", "content": ANSWER}, {"role": "user", "content": "ok"}]
    assert chat(http, proxy.url, other).json()["received"]["messages"][1] == other[1]
    # a harness that kept the reasoning keeps its own
    kept = [*Q, {"role": "assistant", "content": ANSWER, "reasoning_content": "mine"}, {"role": "user", "content": "?"}]
    assert chat(http, proxy.url, kept).json()["received"]["messages"][1]["reasoning_content"] == "mine"
    assert proxy.stats().reasoning_replayed == 1


def test_reasoning_replay_keys_tool_calls_by_id_and_offers_think_tags(upstream, start_proxy, http):
    upstream.script.update({"tool_reply": {"calls": [{"name": "add", "arguments": '{"a": 12, "b": 34}'}],
                                           "content": None, "reasoning": "call add"}})
    proxy = start_proxy(upstream.url, AdapterConfig(reasoning_replay={"mode": "both"}))
    call = chat(http, proxy.url, Q).json()["choices"][0]["message"]
    upstream.script.update({"tool_reply": None, "reasoning_reply": {}})
    loop = [{"role": "user", "content": "reworded by the agent"},  # another history: the call id is the key
            {"role": "assistant", "content": None, "tool_calls": call["tool_calls"]},
            {"role": "tool", "tool_call_id": call["tool_calls"][0]["id"], "content": "46"}]
    sent = chat(http, proxy.url, loop).json()["received"]["messages"][1]
    assert sent["reasoning_content"] == "call add" and sent["content"] == "<think>call add</think>\n"


def test_reasoning_replay_remembers_streams_and_what_the_reasoning_interceptor_split(upstream, start_proxy, http):
    upstream.script.update({"reasoning_reply": {}})
    proxy = start_proxy(upstream.url, AdapterConfig(reasoning_replay={"mode": "think_tags"}, reasoning={}))
    streamed = http.post(f"{proxy.url}/v1/chat/completions", json={"messages": Q, "stream": True}, timeout=30)
    assert _streamed_message(streamed)["content"] == ANSWER
    _stats_after(proxy, 1)  # remembered when the stream ended
    again = [*Q, {"role": "assistant", "content": ANSWER}, {"role": "user", "content": "+1?"}]
    assert chat(http, proxy.url, again).json()["received"]["messages"][1]["content"] == f"<think>{THOUGHT}</think>\n46"

    upstream.script.update({"reasoning_reply": {"split": False, "reasoning": "4+6=10, 1+3=4"}})
    question = [{"role": "user", "content": "34+16?"}]
    assert chat(http, proxy.url, question).json()["choices"][0]["message"]["content"] == ANSWER  # split here
    again = [*question, {"role": "assistant", "content": ANSWER}, {"role": "user", "content": "+1?"}]
    sent = chat(http, proxy.url, again).json()["received"]["messages"][1]["content"]
    assert sent == "<think>4+6=10, 1+3=4</think>\n46"


def test_chat_template_kwargs_reach_chat_requests_and_the_requests_own_keys_win(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url, AdapterConfig(chat_template_kwargs={"kwargs": {"enable_thinking": False,
                                                                                    "budget": 8}}))
    assert chat(http, proxy.url, Q).json()["received"]["chat_template_kwargs"] == {"enable_thinking": False, "budget": 8}
    own = chat(http, proxy.url, Q, chat_template_kwargs={"enable_thinking": True}).json()["received"]
    assert own["chat_template_kwargs"] == {"enable_thinking": True, "budget": 8}
    assert "chat_template_kwargs" not in completion(http, proxy.url, "1+1=").json()["received"]
    with pytest.raises(ValueError, match="chat_template_kwargs sets nothing"):
        AdapterConfig.parse_user({"chat_template_kwargs": {}})


def test_the_new_counters_are_junit_properties():
    names = ("generations", "truncated_reasoning", "truncated_reasoning_share", "reasoning_tokens",
             "finish_reason_relabeled", "empty_generations", "reasoning_replayed")
    assert set(names) <= set(PROXY_FIELDS)
    result = BenchmarkResult(benchmark="s::b", status="error", proxy={"truncated_reasoning": 3, "generations": 4,
                                                                      "truncated_reasoning_share": 0.75})
    properties = dict(to_properties(result))
    assert properties["nemo.proxy.truncated_reasoning"] == "3" and properties["nemo.proxy.truncated_reasoning_share"] == "0.75"
