"""Interceptor base class and the registry by name: what every interceptor module imports.

An interceptor wraps the rest of the chain (`call_next`), like WSGI middleware:
it may change the request, answer without calling on (cache hit), call on
several times (retries), and change the response on the way back.

Each built-in interceptor is one self-contained module under `interceptors/`
(found by `pkgutil`, no import list): its class declares its name, its config
model, its place in the chain (`order`) and when it is on.

Imports flow one way, so no module is half-initialised when another reads it:

    registry  <-  interceptors/*  <-  builtins  <-  config  <-  chain  <-  routes

this module imports none of the others (type names only under TYPE_CHECKING, from
leaf modules); `builtins.py` finds the built-ins and orders them, `config.py`
derives `AdapterConfig`'s keys from them, `chain.py` builds a route's chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from .exchange import ProxyRequest, ProxyResponse

if TYPE_CHECKING:
    from .response_cache import ResponseCache
    from .stats import StatsRecorder
    from .upstream import Upstream

Handler = Callable[[ProxyRequest], ProxyResponse]

# The slot of `AdapterConfig.custom` interceptors (in their listed order) among the built-ins' `order`s.
CUSTOM_ORDER = 50.0
CUSTOM_SLOT = "<custom>"


class StrictConfig(BaseModel):
    """Base of every interceptor config: unknown keys are typos, not silently ignored settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    """Base class. Subclasses implement `handle`; `@register_interceptor(name)` names them.

    A built-in interceptor (a module in `interceptors/`) also sets `order`, which
    makes it a slot of the chain and an `AdapterConfig` key of its name, typed
    by `config_model`. Outermost first: requests flow down increasing `order`,
    responses back up. Custom interceptors (`AdapterConfig.custom`) leave `order`
    None and sit at `CUSTOM_ORDER`.
    """

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel] | None] = None
    order: ClassVar[float | None] = None
    # on in every chain, with no AdapterConfig key (stats: nothing escapes the count)
    always_on: ClassVar[bool] = False
    # absent key = on with `config_model()` defaults, and the key may not be null (retry)
    on_by_default: ClassVar[bool] = False
    # a plain string given for the key means `{shorthand_field: string}` (`cache: reuse`)
    shorthand_field: ClassVar[str | None] = None

    def __init__(self, config: Any, context: ChainContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    def enabled(cls, config: Any) -> bool:
        """Whether the route's config for this key turns it on: present and not `enabled: false`."""
        return config is not None and getattr(config, "enabled", True) is not False

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        raise NotImplementedError

    def close(self) -> None:
        """Release files or connections when the route goes away."""


_REGISTRY: dict[str, type[Interceptor]] = {}


def register_interceptor(name: str) -> Callable[[type[Interceptor]], type[Interceptor]]:
    """Class decorator: make an interceptor available by `name` (in `AdapterConfig.custom`,
    or as a built-in key when its module is in `interceptors/` and it sets `order`)."""

    def decorate(cls: type[Interceptor]) -> type[Interceptor]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"Interceptor name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}.")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def registered() -> dict[str, type[Interceptor]]:
    """The interceptors registered so far, by name (a copy)."""
    return dict(_REGISTRY)
