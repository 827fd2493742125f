"""Streamed (`stream: true`) replies through the proxy: relayed chunk by chunk, recorded once whole.

The upstream's Server-Sent Events go to the client as they arrive (the proxy
adds no buffering delay to a token). What needs the whole reply — the response
log, the route's stats (status, latency, usage) — runs when the stream ends,
or when the client leaves early, on the chunks relayed so far: `assemble`
folds them into the one OpenAI response object they amount to.

The response cache neither answers nor stores streams (interceptors/cache.py):
a replayed stream would arrive all at once, which is not what a client that
asks for a stream measures, and a stream cut short must never be stored as an
answer.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from pytest_nemo_eval.sse import sse_payloads  # noqa: F401 - re-exported for the proxy's readers

Finisher = Callable[[bytes, bool], None]  # (body relayed so far, whether the stream reached its end)


def wants_stream(request_json: dict | None) -> bool:
    return isinstance(request_json, dict) and request_json.get("stream") is True


class StreamBody:
    """A WSGI response iterable over the upstream's chunks that remembers them for the finishers."""

    def __init__(self, chunks: Iterator[bytes], release: Callable[[bool], None]) -> None:
        self._chunks = chunks
        self._release = release  # release(complete): keep or drop the upstream connection
        self._parts: list[bytes] = []
        self._finishers: list[Finisher] = []
        self._complete = False
        self._closed = False

    def on_finish(self, finisher: Finisher) -> None:
        self._finishers.append(finisher)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._parts.append(chunk)
            yield chunk
        self._complete = True

    def close(self) -> None:
        """Called by the WSGI server when the reply is sent or the client is gone; runs the finishers once."""
        if self._closed:
            return
        self._closed = True
        self._release(self._complete)
        body = b"".join(self._parts)
        # innermost interceptor first, as for ordinary replies: each registers its finisher on the way back up,
        # so the registration order is already innermost first (reasoning's token count before stats' record)
        for finisher in self._finishers:
            finisher(body, self._complete)


def assemble(body: bytes) -> dict[str, Any] | None:
    """The OpenAI response a stream of completion or chat chunks amounts to (None when it holds none).

    Choices are joined by index: text (or message content) concatenated, logprobs entries appended,
    tool calls joined by their index (id, type and name as first sent, argument fragments concatenated,
    as OpenAI and vLLM stream them), the last finish_reason and vLLM's stop_reason kept; `usage` from
    the include_usage chunk; an in-stream error as `error`."""
    merged: dict[str, Any] | None = None
    choices: dict[int, dict[str, Any]] = {}
    for payload in sse_payloads(body):
        if payload == "[DONE]":
            continue
        try:
            chunk = json.loads(payload)
        except ValueError:
            continue
        if not isinstance(chunk, dict):
            continue
        if merged is None:
            merged = {key: chunk.get(key) for key in ("id", "object", "created", "model")}
            if isinstance(merged["object"], str):
                merged["object"] = merged["object"].removesuffix(".chunk")
        if "error" in chunk:
            merged["error"] = chunk["error"]
        if chunk.get("usage"):
            merged["usage"] = chunk["usage"]
        for piece in chunk.get("choices") or []:
            if isinstance(piece, dict):
                _merge_choice(choices.setdefault(piece.get("index", 0), {"index": piece.get("index", 0)}), piece)
    if merged is not None:
        merged["choices"] = [choices[i] for i in sorted(choices)]
        merged["streamed"] = True
    return merged


def _merge_choice(into: dict[str, Any], piece: dict[str, Any]) -> None:
    if piece.get("finish_reason") is not None:
        into["finish_reason"] = piece["finish_reason"]
    if piece.get("stop_reason") is not None:
        into["stop_reason"] = piece["stop_reason"]
    delta = piece.get("delta")
    if isinstance(delta, dict):  # chat chunk
        message = into.setdefault("message", {"role": "assistant", "content": ""})
        if isinstance(delta.get("role"), str):
            message["role"] = delta["role"]
        if isinstance(delta.get("content"), str):
            message["content"] += delta["content"]
        for key in ("reasoning_content", "reasoning"):
            if isinstance(delta.get(key), str):
                message[key] = message.get(key, "") + delta[key]
        if isinstance(delta.get("tool_calls"), list):
            _merge_tool_calls(message.setdefault("tool_calls", []), delta["tool_calls"])
        content = (piece.get("logprobs") or {}).get("content")
        if isinstance(content, list):
            into.setdefault("logprobs", {"content": []})["content"].extend(content)
    elif isinstance(piece.get("text"), str):  # completion chunk
        into["text"] = into.get("text", "") + piece["text"]
        logprobs = piece.get("logprobs")
        if isinstance(logprobs, dict):
            block = into.setdefault("logprobs", {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                                 "text_offset": []})
            for key in block:
                block[key].extend(logprobs.get(key) or [])


def _merge_tool_calls(calls: list[dict[str, Any]], pieces: list[Any]) -> None:
    """Fold a delta's `tool_calls` into the calls so far: a piece with a new `index` starts a call
    (`{index, id, type, function: {name, arguments}}`), later pieces of that index add argument text."""
    for piece in pieces:
        if not isinstance(piece, dict):
            continue
        index = piece.get("index", len(calls))
        call = next((c for c in calls if c.get("index") == index), None)
        if call is None:
            call = {"index": index, "id": None, "type": "function", "function": {"name": None, "arguments": ""}}
            calls.append(call)
        if isinstance(piece.get("id"), str) and call["id"] is None:
            call["id"] = piece["id"]
        if isinstance(piece.get("type"), str):
            call["type"] = piece["type"]
        function = piece.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str) and not call["function"]["name"]:
                call["function"]["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                call["function"]["arguments"] += function["arguments"]
