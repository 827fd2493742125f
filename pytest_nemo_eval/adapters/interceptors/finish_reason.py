"""Finish reason: relabel a reply that stopped at the token cap as "length", and count empty generations.

NeMo Evaluator's `finish_reason` interceptor (on by default there too: its
`finish_reason_fixup`), with its semantics:

- the cap is the request's `max_completion_tokens`, else `max_tokens` (a positive
  integer), read as the request is sent upstream (after `payload_modifier`);
- a choice's generated tokens are the larger of `completion_tokens` and
  `completion_tokens_details.reasoning_tokens`, from the choice's own `usage`
  (or the choice itself), else, for a single-choice reply, the reply's `usage`;
- a choice with `finish_reason: "stop"` whose generated tokens reached the cap
  is relabeled `"length"`: some servers say "stop" when a reasoning model spent
  its whole budget thinking, which hides a truncated, unusable answer;
- a choice with no answer text (content empty, whitespace or null, text parts
  joined) and no tool call is an empty generation.

NeMo Evaluator only logs both; here they are also counted per route
(`finish_reason_relabeled`, `empty_generations`; the plugin reports them as
`nemo.proxy.<counter>`) and logged once per route. Beyond NeMo: an answer that
is only a `<think>` block (closed or not) counts as empty too, since that is what
a harness scores once the thought is split off; echo (scoring) requests are
skipped. Streams are relayed as they come, so a stream's finish reason is never
relabeled; its empty generations are counted when it ends.

It sits inside the cache (a cached reply is relabeled and counted as a fresh
one is) and inside the `reasoning` interceptor, which then sees "length" and
treats an unclosed `<think>` as a thought cut off by the cap.
"""

from __future__ import annotations

import logging
from typing import Any

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor
from ..stats import THINK_END, THINK_START, answer_text
from ..streaming import assemble

LOGGER = logging.getLogger(__name__)
CAP_KEYS = ("max_completion_tokens", "max_tokens")


class FinishReasonConfig(StrictConfig):
    """Relabel cap-truncated "stop" replies as "length" and count empty generations (on unless `enabled: false`)."""

    enabled: bool = True


@register_interceptor("finish_reason")
class FinishReasonInterceptor(Interceptor):
    config_model = FinishReasonConfig
    order = 65  # sees the request as sent (after the modifiers), the reply before `reasoning` (20) does
    on_by_default = True
    config: FinishReasonConfig

    def __init__(self, config: FinishReasonConfig, context) -> None:
        super().__init__(config, context)
        self._warned: set[str] = set()

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        body = request.json
        cap = token_cap(body)
        response = call_next(request)
        if not response.ok or (body or {}).get("echo"):
            return response
        if response.stream is not None:
            response.stream.on_finish(lambda raw, complete: self._count(assemble(raw), None) if complete else None)
            return response
        reply = response.json()
        if isinstance(reply, dict) and self._count(reply, cap):
            response.set_json(reply)
        return response

    def _count(self, reply: Any, cap: int | None) -> bool:
        """Relabel (when `cap` is given) and count; True when `reply` changed."""
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list):
            return False
        choices = [c for c in choices if isinstance(c, dict)]
        whole = generated_tokens(reply.get("usage")) if len(choices) == 1 else None
        relabeled = empty = 0
        for choice in choices:
            generated = generated_tokens(choice.get("usage") if isinstance(choice.get("usage"), dict) else choice)
            generated = whole if generated is None else generated
            if cap is not None and generated is not None and generated >= cap and choice.get("finish_reason") == "stop":
                choice["finish_reason"] = "length"
                relabeled += 1
                self._warn_once("relabeled", f"finish_reason relabeled stop -> length: {generated} generated tokens "
                                             f"reached the cap of {cap}")
            if is_empty_generation(choice):
                empty += 1
                self._warn_once("empty", f"empty generation (finish_reason={choice.get('finish_reason')}, "
                                         f"generated tokens {generated})")
        if relabeled:
            self.context.stats.add("finish_reason_relabeled", relabeled)
        if empty:
            self.context.stats.add("empty_generations", empty)
        return bool(relabeled)

    def _warn_once(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            LOGGER.warning("route %s: %s (logged once; the route's stats count every one)", self.context.benchmark,
                           message)


def token_cap(body: Any) -> int | None:
    """The request's generation cap: `max_completion_tokens`, else `max_tokens` (positive integers only)."""
    if not isinstance(body, dict):
        return None
    for key in CAP_KEYS:
        cap = body.get(key)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
            return cap
    return None


def generated_tokens(usage: Any) -> int | None:
    """The larger of `completion_tokens` and `completion_tokens_details.reasoning_tokens` (None without either)."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("completion_tokens_details")
    counts = [t for t in (usage.get("completion_tokens"), details.get("reasoning_tokens") if isinstance(details, dict)
                          else None) if isinstance(t, int) and not isinstance(t, bool)]
    return max(counts) if counts else None


def is_empty_generation(choice: dict) -> bool:
    """No answer text and no tool call; an answer that is only a `<think>` block is empty too."""
    message = choice.get("message")
    if isinstance(message, dict) and message.get("tool_calls"):
        return False
    text = answer_text(choice)
    cut = text.find(THINK_END)
    if cut >= 0:
        text = text[cut + len(THINK_END):]
    elif text.lstrip().startswith(THINK_START):
        text = ""
    return not text.strip()
