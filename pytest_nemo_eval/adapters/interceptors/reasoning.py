"""Reasoning: split `<think>…</think>` off the answer for endpoints that do not, and count reasoning.

Harnesses score the answer, not the thinking. A server with a reasoning parser
(ours with `--nemo-reasoning-parser`, vLLM's `deepseek_r1` / `qwen3`) already
sends the thought in `message.reasoning_content` (newer vLLM: `reasoning`): such
a reply is left as it is (only `reasoning` is copied to `reasoning_content` when
that is missing, so a harness reading either finds it). For an endpoint that
does not split, the interceptor does what those parsers do:

- `<think>` is optional: everything before the first `</think>` is reasoning
  (DeepSeek-R1's template opens `<think>` in the prompt), the rest the answer;
- a reply that opens `<think>` and never closes it while the token cap stopped
  it (`finish_reason: "length"`) was cut off in its thinking: its answer becomes
  "" and the partial thought goes to `reasoning_content`, so a half-thought is
  never scored as an answer (lm-evaluation-harness #3382). Opened and not closed
  with any other finish reason, it is left unchanged.

Counting (stats.py): answers cut off inside their thinking are counted by the
stats interceptor from the reply as the client gets it (`truncated_reasoning`),
reasoning tokens from the server's `usage.completion_tokens_details.reasoning_tokens`;
where the server gives none and this interceptor split the text itself,
`completion_tokens` split by the reasoning's share of the characters (tags
included: they are tokens too) — exact when the model's tokens are characters,
an estimate otherwise. Streams are relayed unchanged (a stream is not split
here); their reasoning tokens are counted when the stream ends.
"""

from __future__ import annotations

from typing import Any

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor
from ..stats import server_reasoning_tokens, share_of_tokens
from ..streaming import assemble


class ReasoningConfig(StrictConfig):
    """Split `start_token`…`end_token` off completions that the server did not split; count reasoning tokens.

    Everything up to and including the first `end_token` is reasoning (the start token is optional). An
    unclosed start token at `finish_reason: "length"` is a thought cut off by the token cap: the answer
    becomes "". `reasoning_field` keeps the split-off text under that key of the message (chat) or choice
    (completions); None drops it.
    """

    enabled: bool = True
    start_token: str = "<think>"
    end_token: str = "</think>"
    reasoning_field: str | None = "reasoning_content"


@register_interceptor("reasoning")
class ReasoningInterceptor(Interceptor):
    config_model = ReasoningConfig
    order = 20  # inside response logging, so the log shows the reply as the client gets it
    config: ReasoningConfig

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        response = call_next(request)
        if not response.ok or (request.json or {}).get("echo"):
            return response  # echo replies contain the prompt
        if response.stream is not None:  # relayed as it comes; its token share is counted once whole
            response.stream.on_finish(lambda body, complete: self._count_stream(request, body))
            return response
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            return response
        if self.normalize(body, request.meta):
            response.set_json(body)
        return response

    def normalize(self, body: dict[str, Any], meta: dict[str, Any]) -> bool:
        """Split each choice that needs it; note in `meta` what was split here. True when `body` changed."""
        reasoning_chars = total_chars = cut = 0
        changed = split_here = False
        for choice in body["choices"]:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict) and _server_split(message):
                if not isinstance(message.get("reasoning_content"), str):  # vLLM >= 0.19 sends only `reasoning`
                    message["reasoning_content"] = message["reasoning"]
                    changed = True
                continue
            holder, key = _text_slot(choice)
            if holder is None:
                continue
            text = holder[key]
            split = self.split(text, truncated=choice.get("finish_reason") == "length")
            total_chars += len(text)
            if split is None:
                continue
            answer, reasoning, closed = split
            split_here = changed = True
            reasoning_chars += len(text) - len(answer)
            cut += not closed
            holder[key] = answer
            if self.config.reasoning_field:
                holder[self.config.reasoning_field] = reasoning
        if split_here:
            meta["reasoning_tokens"] = _tokens(body.get("usage"), reasoning_chars, total_chars)
            meta["truncated_reasoning"] = cut
        return changed

    def split(self, text: str, *, truncated: bool) -> tuple[str, str, bool] | None:
        """(answer, reasoning, whether the thought was closed), or None when there is nothing to split:
        no end token, and either no start token or a reply that was not cut by the token cap."""
        start, end = self.config.start_token, self.config.end_token
        cut = text.find(end)
        opened = text.lstrip().startswith(start)
        if cut < 0:
            if not (opened and truncated):
                return None
            return "", text.lstrip()[len(start):].strip(), False
        reasoning = text[:cut].lstrip()
        if reasoning.startswith(start):
            reasoning = reasoning[len(start):]
        return text[cut + len(end):].lstrip(), reasoning.strip(), True

    def _count_stream(self, request: ProxyRequest, body: bytes) -> None:
        """A streamed reply is not rewritten; where the endpoint did not split it, its reasoning tokens are
        what this interceptor would have split off (the stats interceptor's finisher runs after this one)."""
        assembled = assemble(body)
        if not isinstance(assembled, dict) or server_reasoning_tokens(assembled.get("usage")) is not None:
            return
        copy = {"choices": assembled.get("choices") or [], "usage": assembled.get("usage")}
        self.normalize(copy, request.meta)


def _server_split(message: dict) -> bool:
    """The server put the reasoning in a field of its own (even an empty one: it parsed the reply)."""
    return isinstance(message.get("reasoning_content"), str) or isinstance(message.get("reasoning"), str)


def _tokens(usage: object, reasoning_chars: int, total_chars: int) -> int:
    """The server's own count when it reports one, else `completion_tokens` split by character share."""
    own = server_reasoning_tokens(usage)
    if own is not None:
        return own
    return share_of_tokens(usage.get("completion_tokens") if isinstance(usage, dict) else None,
                           reasoning_chars, total_chars)


def _text_slot(choice: object) -> tuple[dict | None, str]:
    """Where a choice keeps its generated text: `message.content` (chat) or `text` (completions)."""
    if not isinstance(choice, dict):
        return None, ""
    message = choice.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return message, "content"
    if isinstance(choice.get("text"), str):
        return choice, "text"
    return None, ""
