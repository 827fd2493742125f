"""Reasoning replay: put an earlier turn's reasoning back when a harness sends the conversation again.

NeMo Evaluator HEAD's `reasoning_replay`, with its parameter names. Agent loops
and multi-turn harnesses send the model's earlier assistant turns back, but many
(OpenHands, pi-ai, most chat-completions SDKs) drop the reasoning from them, so
the model loses its chain of thought between turns. This interceptor remembers
the reasoning of every reply (`reasoning_content`, else `reasoning`) and, in a
later request, re-injects it into the assistant message it belongs to:

- keys: one per tool call id of the assistant message (ids are unique per reply);
  a message without tool call ids is keyed by a hash of its content's first 256
  characters. NeMo Evaluator scopes those keys by the agent session of the URL;
  one route here serves every sample of a benchmark, so a content key is scoped by
  the conversation before it instead (the role and text of each earlier message,
  as the harness sends them) — two samples whose answers are both "4" keep their
  own reasoning;
- `mode`: `native` (the default here) sets `reasoning_content` on the message,
  the field our server and vLLM's/SGLang's chat templates read, unless it already
  has a reasoning; `think_tags` prefixes its content with
  `tag_open` + reasoning + `tag_close` + newline unless it already starts with
  `tag_open` (NeMo Evaluator's default, for templates that read thoughts from the
  content); `both` does both. NeMo Evaluator's `native` writes `reasoning` too;
  here only `reasoning_content` is written, since a server that reads one field
  may refuse the other;
- at most `cache_max_entries` reasoning texts are kept (least recently used go);
  `log_misses` logs requests whose assistant turns found no reasoning.

It sits outside the `reasoning` interceptor, so it stores the reasoning that
interceptor split off an endpoint's `<think>` text, and keys the answer as the
harness got it. The cache keys the request with the reasoning put back (the
same conversation gets the same reasoning, so a rerun still hits). Streamed
replies are remembered when the stream ends. Each re-injected message counts
as `reasoning_replayed`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from typing import Any, Literal

from pydantic import Field

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import ChainContext, Handler, Interceptor, StrictConfig, register_interceptor
from ..stats import reasoning_text
from ..streaming import assemble

LOGGER = logging.getLogger(__name__)
HASH_PREFIX_CHARS = 256


class ReasoningReplayConfig(StrictConfig):
    """Re-inject earlier assistant turns' reasoning that a harness dropped (NeMo Evaluator's names)."""

    enabled: bool = True
    mode: Literal["native", "think_tags", "both"] = "native"
    tag_open: str = Field(default="<think>", min_length=1)
    tag_close: str = Field(default="</think>", min_length=1)
    cache_max_entries: int = Field(default=10_000, ge=1)
    log_misses: bool = False


@register_interceptor("reasoning_replay")
class ReasoningReplayInterceptor(Interceptor):
    config_model = ReasoningReplayConfig
    order = 15  # outside `reasoning` (20): sees replies split as the harness gets them; before the request changes
    config: ReasoningReplayConfig

    def __init__(self, config: ReasoningReplayConfig, context: ChainContext) -> None:
        super().__init__(config, context)
        self._lock = threading.Lock()
        self._store: OrderedDict[str, str] = OrderedDict()

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        body = request.json
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return call_next(request)
        sent = copy.deepcopy(messages)  # as the harness sent them: the keys of the reply's turn
        replayed = self._replay(messages)
        if replayed is not None:
            request.set_json({**body, "messages": replayed})
        response = call_next(request)
        if response.ok and response.stream is not None:
            response.stream.on_finish(lambda raw, complete: self._remember(sent, assemble(raw)) if complete else None)
        elif response.ok:
            self._remember(sent, response.json())
        return response

    def _replay(self, messages: list) -> list | None:
        """The messages with reasoning put back, or None when nothing was put back."""
        out = list(messages)
        hits = misses = 0
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") != "assistant":
                continue
            keys = message_keys(message, messages[:i])
            reasoning = next((r for r in map(self._get, keys) if r), None)
            if reasoning is None:
                misses += bool(message.get("tool_calls") or _text(message.get("content")))
                continue
            changed = self._apply(message, reasoning)
            if changed is not None:
                out[i] = changed
                hits += 1
        if hits:
            self.context.stats.add("reasoning_replayed", hits)
        if misses and self.config.log_misses:
            LOGGER.warning("reasoning_replay on route %s: %d assistant turn(s) without remembered reasoning",
                           self.context.benchmark, misses)
        return out if hits else None

    def _apply(self, message: dict, reasoning: str) -> dict | None:
        mode, changed = self.config.mode, dict(message)
        if mode in ("native", "both") and not reasoning_text(message).strip():
            changed["reasoning_content"] = reasoning
        content = message.get("content")
        if mode in ("think_tags", "both") and not _text(content).lstrip().startswith(self.config.tag_open):
            tag = f"{self.config.tag_open}{reasoning}{self.config.tag_close}\n"
            changed["content"] = ([{"type": "text", "text": tag}, *content] if isinstance(content, list)
                                  else tag + (content if isinstance(content, str) else ""))
        return changed if changed != message else None

    def _remember(self, sent: list, reply: Any) -> None:
        choices = reply.get("choices") if isinstance(reply, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            message = choice.get("message") if isinstance(choice, dict) else None
            reasoning = reasoning_text(message)
            if isinstance(message, dict) and reasoning.strip():
                for key in message_keys(message, sent):
                    self._put(key, reasoning)

    def _put(self, key: str, value: str) -> None:
        with self._lock:
            self._store[key] = value
            self._store.move_to_end(key)
            while len(self._store) > self.config.cache_max_entries:
                self._store.popitem(last=False)

    def _get(self, key: str) -> str | None:
        with self._lock:
            value = self._store.get(key)
            if value is not None:
                self._store.move_to_end(key)
            return value


def message_keys(message: dict, before: list) -> list[str]:
    """An assistant message's keys: one per tool call id; without ids, its content's first 256 characters
    scoped by the conversation before it (None-content and blank answers have no key)."""
    ids = [call["id"] for call in message.get("tool_calls") or []
           if isinstance(call, dict) and isinstance(call.get("id"), str) and call["id"]]
    if ids:
        return [f"call:{i}" for i in ids]
    text = _text(message.get("content"))[:HASH_PREFIX_CHARS]
    if not text.strip():
        return []
    history = [[m.get("role"), _text(m.get("content"))] for m in before if isinstance(m, dict)]
    digest = hashlib.sha256(json.dumps([history, text], ensure_ascii=False).encode()).hexdigest()
    return [f"text:{digest[:32]}"]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""
