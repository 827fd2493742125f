"""System message: put a configured system prompt in front of the conversation.

`system_message: "text"` is short for `{content: text}`. See `SystemMessageConfig` for the chat modes and the (deliberately opt-in)
completions behaviour.
"""

from __future__ import annotations

from typing import Literal

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor


class SystemMessageConfig(StrictConfig):
    """Inject a system prompt.

    Chat: `replace` drops every existing system message and puts `content` first;
    `prepend` / `append` join it with an existing first system message (or insert one).
    Completions have no roles: `completions="ignore"` (default) leaves the prompt
    untouched — prepending text would shift loglikelihood scoring; `"prepend"`
    puts `content` + `separator` before the prompt.
    """

    enabled: bool = True
    content: str
    mode: Literal["replace", "prepend", "append"] = "replace"
    completions: Literal["ignore", "prepend"] = "ignore"
    separator: str = "\n\n"


@register_interceptor("system_message")
class SystemMessageInterceptor(Interceptor):
    config_model = SystemMessageConfig
    order = 30  # after reasoning (which sees the reply first), before the parameter changes
    shorthand_field = "content"
    config: SystemMessageConfig

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        body = request.json
        if body is not None:
            if isinstance(body.get("messages"), list):
                request.set_json({**body, "messages": self.chat_messages(body["messages"])})
            elif isinstance(body.get("prompt"), str) and self.config.completions == "prepend":
                request.set_json({**body, "prompt": self.config.content + self.config.separator + body["prompt"]})
        return call_next(request)

    def chat_messages(self, messages: list) -> list:
        cfg = self.config
        first_is_system = bool(messages) and isinstance(messages[0], dict) and messages[0].get("role") == "system"
        if cfg.mode == "replace":
            rest = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
            return [{"role": "system", "content": cfg.content}, *rest]
        if not first_is_system:
            return [{"role": "system", "content": cfg.content}, *messages]
        existing = messages[0].get("content") or ""
        joined = cfg.content + cfg.separator + existing if cfg.mode == "prepend" else existing + cfg.separator + cfg.content
        return [{**messages[0], "content": joined}, *messages[1:]]
