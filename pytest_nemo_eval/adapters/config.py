"""`AdapterConfig`: the one typed description of a proxy route's interceptor chain.

One key per built-in interceptor (None or `enabled: false` = off), plus
`custom` for user interceptors registered by name and `max_body_bytes`. The
interceptor keys are not written here: each interceptor's module declares its
config model (registry.py; builtins.py finds them), and the model is built from them, so adding an
interceptor adds its key. The same model is read from YAML
(`nemo-eval proxy --config`), sent as JSON by xdist workers
(`POST /_nemo/benchmarks`) and built in Python by the pytest plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import Field, ValidationError, create_model, model_validator

from .builtins import builtin_interceptors
from .registry import Interceptor, StrictConfig


class CustomInterceptor(StrictConfig):
    """A user interceptor registered with `@register_interceptor(name)`.

    `module` is imported first when given, so a separate proxy process can find it.
    Custom interceptors sit between the payload modifier and request logging.
    """

    name: str
    module: str | None = None
    config: dict[str, Any] = {}


class _AdapterConfigMethods(StrictConfig):
    """What `AdapterConfig` does beyond its fields (which `_derive` adds)."""

    @model_validator(mode="before")
    @classmethod
    def _accept_shorthands(cls, data: Any) -> Any:
        """`system_message: "text"` and `cache: reuse` are common enough to allow
        (each interceptor's `shorthand_field` names the field a plain string sets)."""
        if isinstance(data, dict):
            data = dict(data)
            for interceptor in builtin_interceptors():
                field = interceptor.shorthand_field
                if field and isinstance(data.get(interceptor.name), str):
                    data[interceptor.name] = {field: data[interceptor.name]}
        return data

    @classmethod
    def from_yaml(cls, path: str | Path) -> "AdapterConfig":
        """Read a config file; a bad file raises `ValueError` saying which key is wrong."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ValueError(f"Cannot read adapter config {path}: {exc}. Pass an existing YAML file.") from exc
        except yaml.YAMLError as exc:
            raise ValueError(f"Adapter config {path} is not valid YAML: {exc}") from exc
        if isinstance(data, dict) and "adapter" in data and len(data) == 1:
            data = data["adapter"]
        return cls.parse_user(data, source=str(path))

    @classmethod
    def parse_user(cls, data: Any, *, source: str = "adapter config") -> "AdapterConfig":
        """Validate user data with a one-paragraph error listing each bad key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
            )
            raise ValueError(
                f"Invalid {source}: {problems}. Known keys: {', '.join(cls.model_fields)}; "
                "see pytest_nemo_eval/adapters/interceptors/<key>.py for each interceptor's options."
            ) from None


def _interceptor_field(interceptor: type[Interceptor]) -> tuple[Any, Any]:
    """(type, default) of an interceptor's key: optional and off unless `on_by_default`."""
    model = interceptor.config_model
    if interceptor.on_by_default:
        return model, model()
    return Optional[model], None


def _derive() -> type[_AdapterConfigMethods]:
    keyed = [i for i in builtin_interceptors() if i.config_model is not None and not i.always_on]
    return create_model(
        "AdapterConfig",
        __base__=_AdapterConfigMethods,
        __module__=__name__,
        __doc__="The interceptor chain of one proxy route. Defaults: retries + stats only.",
        **{i.name: _interceptor_field(i) for i in keyed},
        custom=(list[CustomInterceptor], []),
        max_body_bytes=(int, Field(default=32 * 1024 * 1024, gt=0)),
    )


AdapterConfig = _derive()


def __getattr__(name: str) -> type:
    """Each interceptor's config model by its class name (`from .config import CacheConfig`):
    the models live in their interceptor's module, this keeps the old import path working."""
    for interceptor in builtin_interceptors():
        if interceptor.config_model is not None and interceptor.config_model.__name__ == name:
            return interceptor.config_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
