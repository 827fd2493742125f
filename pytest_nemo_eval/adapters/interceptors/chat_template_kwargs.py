"""Chat template kwargs: give every chat request of a route `chat_template_kwargs` (thinking on or off).

Reasoning models switch their thinking in the chat template
(`chat_template_kwargs: {enable_thinking: false}` for Qwen3-style templates),
which vLLM and our server take as a top-level request field. A harness seldom
lets you set it; this interceptor merges `kwargs` into each chat request's own
`chat_template_kwargs`, the request's keys winning (a harness that sets one on
purpose keeps it). Requests to `/v1/chat/completions` (or carrying `messages`)
get them; completions requests are left alone: they have no chat template. The pytest plugin sets it from a suite's
`chat_template_kwargs` field (next to `params`).
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor


class ChatTemplateKwargsConfig(StrictConfig):
    """`kwargs` merged into every chat request's `chat_template_kwargs` (the request's own keys win)."""

    enabled: bool = True
    kwargs: dict[str, Any] = {}

    @model_validator(mode="after")
    def _says_something(self) -> "ChatTemplateKwargsConfig":
        if self.enabled and not self.kwargs:
            raise ValueError("chat_template_kwargs sets nothing: give kwargs, e.g. {kwargs: {enable_thinking: false}}")
        return self


@register_interceptor("chat_template_kwargs")
class ChatTemplateKwargsInterceptor(Interceptor):
    config_model = ChatTemplateKwargsConfig
    order = 38  # a request change like modify_tools (35); payload_modifier (40) may still override the field
    config: ChatTemplateKwargsConfig

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        body = request.json
        if isinstance(body, dict) and (request.path.endswith("/chat/completions") or isinstance(body.get("messages"), list)):
            own = body.get("chat_template_kwargs")
            own = own if isinstance(own, dict) else {}
            merged = {**self.config.kwargs, **own}
            if merged != own:
                request.set_json({**body, "chat_template_kwargs": merged})
        return call_next(request)
