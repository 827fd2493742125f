"""Build a route's interceptor chain from its `AdapterConfig`.

The chain is built once per route, so a request costs one function call per
interceptor. Interceptors nest outermost first (`builtins.chain_order()`).
"""

from __future__ import annotations

from .builtins import builtin_interceptors, chain_order, get_interceptor
from .config import AdapterConfig
from .exchange import ProxyRequest, ProxyResponse
from .registry import CUSTOM_SLOT, ChainContext, Handler, Interceptor


def build_chain(config: AdapterConfig, context: ChainContext, terminal: Handler) -> tuple[Handler, list[Interceptor]]:
    """Instantiate the configured interceptors and nest them around `terminal`."""
    interceptors: list[Interceptor] = []
    try:
        for cls, settings in _configured(config):
            interceptors.append(cls(settings, context))
    except BaseException:
        for interceptor in interceptors:  # a later one failed: release what the earlier ones opened
            interceptor.close()
        raise
    handler = terminal
    for interceptor in reversed(interceptors):
        handler = _wrap(interceptor, handler)
    return handler, interceptors


def _configured(config: AdapterConfig):
    """(interceptor class, its settings) for each enabled slot, in chain order."""
    by_name = {cls.name: cls for cls in builtin_interceptors()}
    for slot in chain_order():
        if slot == CUSTOM_SLOT:
            for spec in config.custom:
                cls = get_interceptor(spec.name, spec.module)
                yield cls, (cls.config_model.model_validate(spec.config) if cls.config_model else spec.config)
            continue
        cls = by_name[slot]
        if cls.always_on:
            yield cls, None
            continue
        settings = getattr(config, slot)
        if cls.enabled(settings):
            yield cls, settings


def _wrap(interceptor: Interceptor, call_next: Handler) -> Handler:
    handle = interceptor.handle

    def handler(request: ProxyRequest) -> ProxyResponse:
        return handle(request, call_next)

    return handler
