"""System message: put a configured system prompt in front of the conversation.

See `SystemMessageConfig` for the chat modes and the (deliberately opt-in)
completions behaviour.
"""

from __future__ import annotations

from ..config import SystemMessageConfig
from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, register_interceptor


@register_interceptor("system_message")
class SystemMessageInterceptor(Interceptor):
    config_model = SystemMessageConfig
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
