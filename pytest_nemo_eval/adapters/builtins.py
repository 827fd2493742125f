"""The built-in interceptors (the modules of `interceptors/`) in chain order, and lookup by name.

Separate from registry.py so the registry stays a leaf: the interceptor modules
import the registry, this module imports them (registry.py says which way
imports flow).
"""

from __future__ import annotations

import importlib

from .registry import CUSTOM_ORDER, CUSTOM_SLOT, Interceptor, registered

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
        found = [cls for cls in registered().values() if cls.order is not None and cls.__module__.startswith(package)]
        orders = [cls.order for cls in found] + [CUSTOM_ORDER]
        if len(set(orders)) != len(orders):
            raise RuntimeError(f"Two interceptors share a chain `order` ({sorted(orders)}); give each its own.")
        _BUILTINS = tuple(sorted(found, key=lambda cls: cls.order))
    return _BUILTINS


def chain_order() -> tuple[str, ...]:
    """The names of the chain's slots, outermost first, `<custom>` where custom ones go."""
    slots = [(cls.order, cls.name) for cls in builtin_interceptors()] + [(CUSTOM_ORDER, CUSTOM_SLOT)]
    return tuple(name for _, name in sorted(slots))


def get_interceptor(name: str, module: str | None = None) -> type[Interceptor]:
    """Look an interceptor up, importing `module` first so it can register itself."""
    builtin_interceptors()
    if name not in registered() and module:
        importlib.import_module(module)
    found = registered().get(name)
    if found is None:
        raise ValueError(
            f"Unknown interceptor {name!r}. Registered: {', '.join(sorted(registered()))}. "
            "Decorate your class with @register_interceptor(name) and give its `module` in the config."
        )
    return found
