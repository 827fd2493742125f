"""Request logging: the request as sent upstream, one JSONL line each, secrets redacted.

Also the JSONL logging shared with response_logging.py (`LoggingConfig`, `JsonlLoggingInterceptor`).
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field

from ..exchange import ProxyRequest, ProxyResponse
from ..jsonl_log import JsonlLog
from ..redact import redact_headers, redact_value
from ..registry import ChainContext, Handler, Interceptor, StrictConfig, register_interceptor


class LoggingConfig(StrictConfig):
    """JSONL log of requests or responses. `max_entries=None` logs all.
    `path=None` writes under the proxy's log dir as `<benchmark>/<requests|responses>.jsonl`."""

    enabled: bool = True
    path: Path | None = None
    max_entries: int | None = Field(default=None, ge=0)


def open_log(config: LoggingConfig, context: ChainContext, kind: str) -> JsonlLog:
    path = config.path or context.log_dir / context.benchmark / f"{kind}.jsonl"
    return JsonlLog(path, config.max_entries)


def loggable_body(body: bytes, parsed: object, secrets: tuple[str, ...]) -> object:
    """The JSON body redacted, or the raw text (redacted of known secrets) when not JSON."""
    if parsed is not None:
        return redact_value(parsed, secrets)
    return redact_value(body[:10_000].decode(errors="replace"), secrets)


def known_secrets(context: ChainContext) -> tuple[str, ...]:
    return (context.upstream.api_key,) if context.upstream.api_key else ()


class JsonlLoggingInterceptor(Interceptor):
    """Shared by request and response logging: one bounded JSONL file per route and kind."""

    config_model = LoggingConfig
    kind: str

    def __init__(self, config: LoggingConfig, context: ChainContext) -> None:
        super().__init__(config, context)
        self.log = open_log(config, context, self.kind)
        self.secrets = known_secrets(context)

    def close(self) -> None:
        self.log.close()


@register_interceptor("request_logging")
class RequestLoggingInterceptor(JsonlLoggingInterceptor):
    kind = "requests"
    order = 60  # inside the modifiers and custom ones: logs the request as sent upstream

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        if self.log.wants_more():
            self.log.write({
                "time": time.time(),
                "benchmark": request.benchmark,
                "method": request.method,
                "path": request.path,
                "headers": redact_value(redact_headers(request.headers), self.secrets),
                "body": loggable_body(request.body, request.json, self.secrets),
            })
        return call_next(request)
