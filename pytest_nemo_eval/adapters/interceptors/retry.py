"""Retry: exponential backoff with full jitter around the upstream call.

Retries connection errors and 429/5xx (configurable), honours `Retry-After`
(capped by `backoff_max_s`), and turns a final failure into an OpenAI-shaped
502/504 whose message says what happened and what to check.
"""

from __future__ import annotations

import random
import time

from typing import Literal

from pydantic import Field

from ..exchange import ProxyRequest, ProxyResponse, error_response
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor
from ..upstream import UpstreamError, UpstreamTimeout


class RetryConfig(StrictConfig):
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


@register_interceptor("retry")
class RetryInterceptor(Interceptor):
    config_model = RetryConfig
    order = 80  # innermost: wraps only the upstream call
    on_by_default = True  # it also sets the request timeout, which every route needs
    config: RetryConfig

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        cfg = self.config
        request.meta["timeout_s"] = cfg.timeout_s
        request.meta["connect_timeout_s"] = cfg.connect_timeout_s
        attempts = cfg.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                self.context.stats.add("retries")
            last = attempt == attempts - 1
            try:
                response = call_next(request)
            except UpstreamError as exc:
                if last or not exc.retryable or (isinstance(exc, UpstreamTimeout) and not cfg.retry_on_timeout):
                    suffix = f" (after {attempt + 1} attempts)" if attempt else ""
                    return error_response(exc.status, f"{exc}{suffix}", exc.error_type)
                self._sleep(attempt, None)
                continue
            if response.status in cfg.retry_statuses and not response.from_proxy and not last:
                self._sleep(attempt, response.headers.get("Retry-After"))
                continue
            if cfg.client_errors == "raise" and 400 <= response.status < 500 and response.status not in cfg.retry_statuses:
                return error_response(
                    502,
                    f"Upstream rejected {request.method} {request.path} with {response.status}: "
                    f"{response.body[:300].decode(errors='replace')}. The proxy treats client errors as failures "
                    "(retry.client_errors=raise); fix the request or set client_errors=pass.",
                    "upstream_client_error",
                )
            return response
        raise AssertionError("unreachable: the last attempt always returns")

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        cfg = self.config
        delay = random.uniform(0, min(cfg.backoff_max_s, cfg.backoff_base_s * (2**attempt)))
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), cfg.backoff_max_s))
            except ValueError:
                pass  # an HTTP-date Retry-After: keep our own backoff
        time.sleep(delay)
