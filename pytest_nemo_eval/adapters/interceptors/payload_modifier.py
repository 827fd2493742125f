"""Payload modifier: set defaults, override, remove or cap request parameters.

Typical: `override: {temperature: 0}` for reproducible greedy runs,
`cap: {max_tokens: 512}` to bound generation cost.
"""

from __future__ import annotations

from typing import Any

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor


class PayloadModifierConfig(StrictConfig):
    """Change request parameters: `defaults` only when absent, `override` always,
    `remove` deletes keys, `cap` lowers numeric values above a maximum (e.g. max_tokens)."""

    enabled: bool = True
    defaults: dict[str, Any] = {}
    override: dict[str, Any] = {}
    remove: list[str] = []
    cap: dict[str, float] = {}


@register_interceptor("payload_modifier")
class PayloadModifierInterceptor(Interceptor):
    config_model = PayloadModifierConfig
    order = 40  # the last built-in change to the request; custom interceptors come next
    config: PayloadModifierConfig

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        if request.json is not None:
            request.set_json(self.modify(request.json))
        return call_next(request)

    def modify(self, body: dict) -> dict:
        cfg = self.config
        body = {**cfg.defaults, **body, **cfg.override}
        for key in cfg.remove:
            body.pop(key, None)
        for key, maximum in cfg.cap.items():
            value = body.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > maximum:
                body[key] = type(value)(maximum)
        return body
