"""`AdapterConfig`: the one typed description of a proxy route's interceptor chain.

One field per built-in interceptor (None or `enabled: false` = off), plus
`custom` for user interceptors registered by name. The same model is read from
YAML (`nemo-eval proxy --config`), sent as JSON by xdist workers
(`POST /_nemo/benchmarks`) and built in Python by the pytest plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Strict(BaseModel):
    """Unknown keys are typos, not silently ignored settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SystemMessageConfig(_Strict):
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


class PayloadModifierConfig(_Strict):
    """Change request parameters: `defaults` only when absent, `override` always,
    `remove` deletes keys, `cap` lowers numeric values above a maximum (e.g. max_tokens)."""

    enabled: bool = True
    defaults: dict[str, Any] = {}
    override: dict[str, Any] = {}
    remove: list[str] = []
    cap: dict[str, float] = {}


class LoggingConfig(_Strict):
    """JSONL log of requests or responses. `max_entries=None` logs all.
    `path=None` writes under the proxy's log dir as `<benchmark>/<requests|responses>.jsonl`."""

    enabled: bool = True
    path: Path | None = None
    max_entries: int | None = Field(default=None, ge=0)


class ReasoningConfig(_Strict):
    """Strip `start_token`…`end_token` from completions and count reasoning tokens.

    Everything up to and including the first `end_token` is removed (models often
    omit the start token). A reply that opens reasoning but never closes it is left
    unchanged and counted as all reasoning. `reasoning_field` (chat only) keeps the
    stripped text under that message key; None drops it.
    """

    enabled: bool = True
    start_token: str = "<think>"
    end_token: str = "</think>"
    reasoning_field: str | None = "reasoning_content"


class CacheConfig(_Strict):
    """Response cache in a shared SQLite (WAL) file.

    `reuse`: serve hits, store misses. `refresh`: always ask upstream, overwrite.
    `off`: neither. `namespace` separates caches of different models; None = the
    upstream's model id from `/v1/models` (falls back to the request's `model`).
    `path=None` uses the proxy's `cache_path`. `busy_timeout_s`: how long a write
    waits for another process's lock before giving up on storing (never on serving).
    """

    mode: Literal["reuse", "refresh", "off"] = "reuse"
    path: Path | None = None
    namespace: str | None = None
    busy_timeout_s: float = Field(default=5.0, ge=0)


class RetryConfig(_Strict):
    """Retries with exponential backoff and full jitter, and the per-request timeout.

    Retried: connection errors, and statuses in `retry_statuses` (429, 5xx).
    Timeouts are retried only with `retry_on_timeout` (a hung model would
    otherwise multiply the wait). Client errors (other 4xx) pass through
    unchanged, or become a 502 with an explanation when `client_errors="raise"`.
    """

    max_retries: int = Field(default=5, ge=0)
    backoff_base_s: float = Field(default=0.25, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    retry_statuses: list[int] = [429, 500, 502, 503, 504]
    retry_on_timeout: bool = False
    client_errors: Literal["pass", "raise"] = "pass"


class CustomInterceptor(_Strict):
    """A user interceptor registered with `@register_interceptor(name)`.

    `module` is imported first when given, so a separate proxy process can find it.
    Custom interceptors sit between the payload modifier and request logging.
    """

    name: str
    module: str | None = None
    config: dict[str, Any] = {}


class AdapterConfig(_Strict):
    """The interceptor chain of one proxy route. Defaults: retries + stats only."""

    system_message: SystemMessageConfig | None = None
    payload_modifier: PayloadModifierConfig | None = None
    request_logging: LoggingConfig | None = None
    response_logging: LoggingConfig | None = None
    reasoning: ReasoningConfig | None = None
    cache: CacheConfig | None = None
    retry: RetryConfig = RetryConfig()
    custom: list[CustomInterceptor] = []
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _accept_shorthands(cls, data: Any) -> Any:
        """`system_message: "text"` and `cache: reuse` are common enough to allow."""
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("system_message"), str):
                data["system_message"] = {"content": data["system_message"]}
            if isinstance(data.get("cache"), str):
                data["cache"] = {"mode": data["cache"]}
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
                "see pytest_nemo_eval/adapters/config.py for each interceptor's options."
            ) from None
