"""log_tokens: each request's token usage, one JSONL line per request in the route's log folder.

NeMo Evaluator has no interceptor of this name (its `response_stats` keeps totals only); the
proxy's stats keep totals too (`prompt_tokens`, `completion_tokens`). This one keeps them per
request, so a long run's cost can be read request by request (which prompts are long, which
answers ran to the cap, how fast each was generated):

    <log_dir>/<benchmark>/tokens.jsonl   (or `path`), at most `max_entries` lines
    {"time", "benchmark", "path", "status", "id", "model", "from_cache", "streamed",
     "prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens", "latency_ms",
     "finish_reasons"}

From the reply's OpenAI `usage` block as the client gets it: a cache hit is logged with
`from_cache: true` (the tokens it did not cost now), a stream when it ends (its `include_usage`
chunk; null counts without one), an error with its status and null counts. `reasoning_tokens` is
the server's `usage.completion_tokens_details.reasoning_tokens` (null when it sends none). The
same line also goes to the Python logger at DEBUG. Off unless configured.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..exchange import ProxyRequest, ProxyResponse
from ..jsonl_log import JsonlLog
from ..registry import Handler, Interceptor, register_interceptor
from ..streaming import assemble
from .request_logging import LoggingConfig

LOGGER = logging.getLogger(__name__)


class LogTokensConfig(LoggingConfig):
    """`path` None: `<log_dir>/<benchmark>/tokens.jsonl`; `max_entries` None: every request."""


@register_interceptor("log_tokens")
class LogTokensInterceptor(Interceptor):
    config_model = LogTokensConfig
    order = 12  # beside response_logging (10): the reply as the client gets it, cache hits included
    config: LogTokensConfig

    def __init__(self, config: LogTokensConfig, context) -> None:
        super().__init__(config, context)
        self.log = JsonlLog(config.path or context.log_dir / context.benchmark / "tokens.jsonl", config.max_entries)

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        started = time.perf_counter()
        response = call_next(request)
        if response.stream is not None:
            response.stream.on_finish(
                lambda body, complete: self._write(request, response, assemble(body), started, streamed=True))
        else:
            self._write(request, response, response.json(), started, streamed=False)
        return response

    def _write(self, request: ProxyRequest, response: ProxyResponse, reply: Any, started: float,
               streamed: bool) -> None:
        if not self.log.wants_more():
            return
        reply = reply if isinstance(reply, dict) else {}
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        details = usage.get("completion_tokens_details")
        choices = reply.get("choices") if isinstance(reply.get("choices"), list) else []
        entry = {
            "time": time.time(),
            "benchmark": request.benchmark,
            "path": request.path,
            "status": response.status,
            "id": reply.get("id"),
            "model": reply.get("model"),
            "from_cache": response.from_cache,
            "streamed": streamed,
            "prompt_tokens": _count(usage.get("prompt_tokens")),
            "completion_tokens": _count(usage.get("completion_tokens")),
            "total_tokens": _count(usage.get("total_tokens")),
            "reasoning_tokens": _count(details.get("reasoning_tokens")) if isinstance(details, dict) else None,
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
            "finish_reasons": [c.get("finish_reason") for c in choices if isinstance(c, dict)],
        }
        self.log.write(entry)
        LOGGER.debug("tokens %s", entry)

    def close(self) -> None:
        self.log.close()


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
