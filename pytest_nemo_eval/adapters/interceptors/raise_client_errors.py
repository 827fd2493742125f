"""raise_client_errors (NeMo Evaluator's interceptor of that name): fail fast on a non-retryable 4xx.

A request the model server refuses with a client error (400 bad parameter, 404 unknown model, 413,
422, ...) will be refused again however often it is sent, and a harness scores each refusal as a
wrong answer. NeMo Evaluator's interceptor raises a fatal error that stops the evaluation; ours,
in a proxy shared by many benchmarks, stops the one route (benchmark) it belongs to:

- the first matching upstream reply trips the route: it is answered with the upstream's own status
  (a 4xx, which harnesses do not retry) and an OpenAI-shaped error whose message names the status,
  the request (`POST /v1/chat/completions`), the benchmark and the upstream's own error text;
- every later request on the route gets the same error at once, without reaching the model, so the
  harness stops after the requests already in flight instead of sending the whole dataset;
- the route's stats count each as an error, the message being `last_error`, so the plugin errors the
  benchmark with its "Diagnosis: the model answered N of M requests with an error (last: ...)" in the
  JUnit (`nemo.error`) under the default `max_request_errors: 0`;
- `<log_dir>/<benchmark>/client_error.json` keeps the first refusal (status, request, upstream body;
  NeMo writes a `.nemo_evaluator_server_error` marker likewise) for whatever reads the route's folder.

Which statuses, as NeMo's parameters: `status_codes` (always), else not `exclude_status_codes`
(408, 429: retryable), else within `status_code_range_start`..`status_code_range_end` (400..499,
inclusive; one end alone is an open range). Only the model's replies count: an error the proxy made
itself (`from_proxy`) is not the model refusing. Off unless configured, as in NeMo Evaluator.
With `retry.client_errors: raise` the retry interceptor (inside this one) already turns client errors
into 502s made by the proxy; use one or the other.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from pydantic import Field, model_validator

from ..exchange import ProxyRequest, ProxyResponse, dumps
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor

LOGGER = logging.getLogger(__name__)
MARKER = "client_error.json"
ERROR_TYPE = "upstream_client_error"


class RaiseClientErrorsConfig(StrictConfig):
    """NeMo Evaluator's `raise_client_errors` params (same names and defaults), plus `enabled`."""

    enabled: bool = True
    exclude_status_codes: list[int] | None = Field(default_factory=lambda: [408, 429])
    status_codes: list[int] | None = None
    status_code_range_start: int | None = 400
    status_code_range_end: int | None = 499

    @model_validator(mode="after")
    def _consistent(self) -> "RaiseClientErrorsConfig":
        both = set(self.status_codes or ()) & set(self.exclude_status_codes or ())
        if both:
            raise ValueError(f"status code(s) {sorted(both)} are in both status_codes and exclude_status_codes")
        start, end = self.status_code_range_start, self.status_code_range_end
        if start is not None and end is not None and start >= end:
            raise ValueError(f"status_code_range_start..status_code_range_end is not a range: [{start}, {end}]")
        return self

    def raises_on(self, status: int) -> bool:
        if self.status_codes and status in self.status_codes:
            return True
        if self.exclude_status_codes and status in self.exclude_status_codes:
            return False
        start, end = self.status_code_range_start, self.status_code_range_end
        if start is None and end is None:
            return False
        return (start is None or start <= status) and (end is None or status <= end)


@register_interceptor("raise_client_errors")
class RaiseClientErrorsInterceptor(Interceptor):
    config_model = RaiseClientErrorsConfig
    order = 75  # inside the cache (70): sees the model's final reply after retries (80), never stores it
    config: RaiseClientErrorsConfig

    def __init__(self, config: RaiseClientErrorsConfig, context) -> None:
        super().__init__(config, context)
        self._lock = threading.Lock()
        self._tripped: tuple[int, bytes] | None = None  # (status, error body) every later request gets

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        tripped = self._tripped
        if tripped is not None:
            return ProxyResponse(tripped[0], tripped[1], from_proxy=True)
        response = call_next(request)
        if response.from_proxy or response.stream is not None or not self.config.raises_on(response.status):
            return response
        upstream_text = _error_text(response.body)
        message = (
            f"raise_client_errors: the model answered {request.method} {request.path} with HTTP {response.status}"
            f" ({upstream_text}); a client error is not retried, so benchmark {request.benchmark!r} stops here: "
            "every later request of it is refused without reaching the model. Fix the request the harness "
            "sends (the proxy's request log has it), or leave this status out with exclude_status_codes."
        )
        body = dumps({"error": {"message": message, "type": ERROR_TYPE, "code": response.status}})
        with self._lock:
            first = self._tripped is None
            if first:
                self._tripped = (response.status, body)
        if first:
            LOGGER.error("%s", message)
            self._write_marker(request, response, upstream_text, message)
        return ProxyResponse(response.status, body, from_proxy=True)

    def _write_marker(self, request: ProxyRequest, response: ProxyResponse, upstream_text: str, message: str) -> None:
        folder = self.context.log_dir / self.context.benchmark
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / MARKER).write_text(json.dumps({
                "time": time.time(), "benchmark": request.benchmark, "method": request.method, "path": request.path,
                "status": response.status, "upstream_error": upstream_text, "message": message,
            }, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:  # the refusal stands without its marker
            LOGGER.warning("raise_client_errors: could not write %s: %s", folder / MARKER, exc)


def _error_text(body: bytes) -> str:
    """The upstream's error message (OpenAI `error.message`, FastAPI `detail`), else its body's start."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
        if parsed.get("detail"):
            return str(parsed["detail"])[:500]
    return body[:300].decode(errors="replace").strip() or "no body"
