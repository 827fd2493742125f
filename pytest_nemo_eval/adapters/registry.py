"""Interceptor base class, the registry by name, and the chain builder.

An interceptor wraps the rest of the chain (`call_next`), like WSGI middleware:
it may change the request, answer without calling on (cache hit), call on
several times (retries), and change the response on the way back. The chain is
built once per route, so a request costs one function call per interceptor.

Each built-in interceptor is one self-contained module under `interceptors/`
(found by `pkgutil`, no import list): its class declares its name, its config
model, its place in the chain (`order`) and when it is on. `AdapterConfig`'s
keys are derived from those classes (config.py), so nothing here names one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from .exchange import ProxyRequest, ProxyResponse

if TYPE_CHECKING:
    from .config import AdapterConfig
    from .interceptors.cache import ResponseCache
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


def get_interceptor(name: str, module: str | None = None) -> type[Interceptor]:
    """Look an interceptor up, importing `module` first so it can register itself."""
    builtin_interceptors()
    if name not in _REGISTRY and module:
        importlib.import_module(module)
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown interceptor {name!r}. Registered: {', '.join(sorted(_REGISTRY))}. "
            "Decorate your class with @register_interceptor(name) and give its `module` in the config."
        )
    return _REGISTRY[name]


_BUILTINS: tuple[type[Interceptor], ...] | None = None


def builtin_interceptors() -> tuple[type[Interceptor], ...]:
    """The interceptors of `interceptors/` in chain order (imported once; importing registers them).

    Fixed at first use: `AdapterConfig`'s keys are built from this tuple, so a
    class registered later with an `order` is a custom interceptor, not a key.
    """
    global _BUILTINS
    if _BUILTINS is None:
        from . import interceptors

        package = interceptors.__name__ + "."
        found = [cls for cls in _REGISTRY.values() if cls.order is not None and cls.__module__.startswith(package)]
        orders = [cls.order for cls in found] + [CUSTOM_ORDER]
        if len(set(orders)) != len(orders):
            raise RuntimeError(f"Two interceptors share a chain `order` ({sorted(orders)}); give each its own.")
        _BUILTINS = tuple(sorted(found, key=lambda cls: cls.order))
    return _BUILTINS


def chain_order() -> tuple[str, ...]:
    """The names of the chain's slots, outermost first, `<custom>` where custom ones go."""
    slots = [(cls.order, cls.name) for cls in builtin_interceptors()] + [(CUSTOM_ORDER, CUSTOM_SLOT)]
    return tuple(name for _, name in sorted(slots))


def build_chain(config: "AdapterConfig", context: ChainContext, terminal: Handler) -> tuple[Handler, list[Interceptor]]:
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


def _configured(config: "AdapterConfig"):
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
