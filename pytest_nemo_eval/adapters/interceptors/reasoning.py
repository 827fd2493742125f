"""Reasoning: strip `<think>…</think>` from replies and count reasoning tokens.

Harnesses score the answer, not the thinking. Reasoning tokens are the
server's own count when its `usage` reports one; otherwise `completion_tokens`
split by character share (the proxy has no tokenizer) — exact when the model's
tokens are characters, an estimate otherwise.
"""

from __future__ import annotations

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor


class ReasoningConfig(StrictConfig):
    """Strip `start_token`…`end_token` from completions and count reasoning tokens.

    Everything up to and including the first `end_token` is removed (models often
    omit the start token). A reply that opens reasoning but never closes it is left
    unchanged and counted as all reasoning. `reasoning_field` (chat only) keeps the
    stripped text under that message key; None drops it.
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
        if not response.ok or (request.json or {}).get("echo") or response.stream is not None:
            return response  # echo replies contain the prompt; streams are relayed as they come, unchanged
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            return response
        reasoning_chars = total_chars = 0
        changed = False
        for choice in body["choices"]:
            holder, key = _text_slot(choice)
            if holder is None:
                continue
            text = holder[key]
            answer, reasoning = self.split(text)
            total_chars += len(text)
            reasoning_chars += len(text) - len(answer) if answer != text else len(reasoning)  # tags count too
            if answer != text:
                changed = True
                holder[key] = answer
                if key == "content" and self.config.reasoning_field:
                    holder[self.config.reasoning_field] = reasoning
        if changed:
            response.set_json(body)
        request.meta["reasoning_tokens"] = _reasoning_tokens(body.get("usage"), reasoning_chars, total_chars)
        return response

    def split(self, text: str) -> tuple[str, str]:
        """(answer, reasoning). Unclosed reasoning stays in the answer but counts as reasoning."""
        start, end = self.config.start_token, self.config.end_token
        cut = text.find(end)
        if cut < 0:
            opened = text.lstrip().startswith(start)
            return text, (text if opened else "")
        reasoning = text[:cut]
        if reasoning.lstrip().startswith(start):
            reasoning = reasoning.lstrip()[len(start):]
        return text[cut + len(end):].lstrip(), reasoning.strip()


def _reasoning_tokens(usage: object, reasoning_chars: int, total_chars: int) -> int:
    """The server's own count when it reports one (OpenAI's `completion_tokens_details`),
    else `completion_tokens` split by the reasoning's share of the characters."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("completion_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
        return details["reasoning_tokens"]
    completion_tokens = usage.get("completion_tokens")
    if not reasoning_chars or not total_chars or not isinstance(completion_tokens, int):
        return 0
    return round(completion_tokens * reasoning_chars / total_chars)


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
