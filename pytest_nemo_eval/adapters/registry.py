"""Interceptor base class, the registry by name, and the chain builder.

An interceptor wraps the rest of the chain (`call_next`), like WSGI middleware:
it may change the request, answer without calling on (cache hit), call on
several times (retries), and change the response on the way back. The chain is
built once per route, so a request costs one function call per interceptor.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel

from .config import AdapterConfig
from .exchange import ProxyRequest, ProxyResponse

if TYPE_CHECKING:
    from .interceptors.cache import ResponseCache
    from .stats import StatsRecorder
    from .upstream import Upstream

Handler = Callable[[ProxyRequest], ProxyResponse]


@dataclass
class ChainContext:
    """What a route's interceptors share: its name, the upstream, its stats, where to write."""

    benchmark: str
    upstream: "Upstream"
    stats: "StatsRecorder"
    log_dir: Path
    open_cache: Callable[[Path | None, float], "ResponseCache"]
    upstream_model_id: Callable[[], str | None]


class Interceptor:
    """Base class. Subclasses set `name`, `config_model` and implement `handle`."""

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, config: Any, context: ChainContext) -> None:
        self.config = config
        self.context = context

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        raise NotImplementedError

    def close(self) -> None:
        """Release files or connections when the route goes away."""


_REGISTRY: dict[str, type[Interceptor]] = {}


def register_interceptor(name: str) -> Callable[[type[Interceptor]], type[Interceptor]]:
    """Class decorator: make an interceptor available by `name` in `AdapterConfig.custom`."""

    def decorate(cls: type[Interceptor]) -> type[Interceptor]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"Interceptor name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}.")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def get_interceptor(name: str, module: str | None = None) -> type[Interceptor]:
    """Look an interceptor up, importing `module` first so it can register itself."""
    _load_builtins()
    if name not in _REGISTRY and module:
        importlib.import_module(module)
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown interceptor {name!r}. Registered: {', '.join(sorted(_REGISTRY))}. "
            "Decorate your class with @register_interceptor(name) and give its `module` in the config."
        )
    return _REGISTRY[name]


def _load_builtins() -> None:
    from . import interceptors  # noqa: F401  (importing registers them)


# Outermost first. Requests flow down this list, responses back up, so: stats see
# the whole exchange; responses are logged as the client gets them (after
# reasoning stripping); requests are logged as sent upstream (after the
# modifiers); the cache keys the final request and stores the raw upstream reply;
# retries wrap only the upstream call.
CHAIN_ORDER = ("stats", "response_logging", "reasoning", "system_message", "payload_modifier",
               "<custom>", "request_logging", "cache", "retry")


def build_chain(config: AdapterConfig, context: ChainContext, terminal: Handler) -> tuple[Handler, list[Interceptor]]:
    """Instantiate the configured interceptors and nest them around `terminal`."""
    _load_builtins()
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
    for slot in CHAIN_ORDER:
        if slot == "<custom>":
            for spec in config.custom:
                cls = get_interceptor(spec.name, spec.module)
                yield cls, (cls.config_model.model_validate(spec.config) if cls.config_model else spec.config)
            continue
        settings = True if slot == "stats" else getattr(config, slot)
        if settings is None or getattr(settings, "enabled", True) is False:
            continue
        if slot == "cache" and settings.mode == "off":
            continue
        yield _REGISTRY[slot], settings


def _wrap(interceptor: Interceptor, call_next: Handler) -> Handler:
    handle = interceptor.handle

    def handler(request: ProxyRequest) -> ProxyResponse:
        return handle(request, call_next)

    return handler
