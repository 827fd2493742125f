"""Stats: count every exchange, its latency, tokens, cache hits, errors, tool calls and reasoning.

Outermost in the chain, so its latency is the proxy's whole turnaround and no
request escapes the count. Token counts come from the OpenAI `usage` block;
tool calls from the replies' `message.tool_calls` and vLLM's `stop_reason`
(stats.tool_counts), cache hits included: they are what the harness got.
Reasoning (stats.reply_counts) is read from the reply as the client gets it, so
answers cut off inside their thinking are counted whether the server split the
reasoning or the `reasoning` interceptor did (or neither: an unclosed `<think>`).
"""

from __future__ import annotations

import logging
import time

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, register_interceptor
from ..stats import ReplyCounts, reply_counts, tool_counts
from ..streaming import assemble

LOGGER = logging.getLogger(__name__)
IGNORED_FIELDS_HEADER = "x-nemo-ignored-fields"  # our server names the top-level request fields it ignored


@register_interceptor("stats")
class StatsInterceptor(Interceptor):
    order = 0  # outermost: sees the whole exchange, latency included
    always_on = True

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        recorder = self.context.stats
        recorder.started()
        start = time.perf_counter()
        response = None
        try:
            response = call_next(request)
            return response
        finally:
            latency_ms = (time.perf_counter() - start) * 1000.0
            if response is not None:
                self._note_ignored(response)
            if response is not None and response.stream is not None:  # counted when the stream ends
                response.stream.on_finish(lambda body, complete: self._finish_stream(request, response, start, body))
            elif response is None:  # an interceptor raised: the server turns it into a 500
                recorder.finished(status=500, latency_ms=latency_ms, error="internal proxy error", cache_hit=False)
            else:
                reply = _reply(response)
                usage = _usage(reply)
                recorder.finished(
                    status=response.status,
                    latency_ms=latency_ms,
                    error=None if response.ok else _error_text(response),
                    cache_hit=response.from_cache,
                    prompt_tokens=usage.get("prompt_tokens", 0),
                    completion_tokens=usage.get("completion_tokens", 0),
                    replies=_replies(request, reply),
                    tools=tool_counts(reply),
                )


    def _note_ignored(self, response: ProxyResponse) -> None:
        header = next((v for k, v in response.headers.items() if k.lower() == IGNORED_FIELDS_HEADER), "")
        names = [name for name in header.split(",") if name]
        if names:
            for name in self.context.stats.ignored(names):
                LOGGER.warning("the model server ignored the request field %r (logged once per name)", name)

    def _finish_stream(self, request: ProxyRequest, response: ProxyResponse, start: float, body: bytes) -> None:
        """Latency: to the stream's last byte; tokens: its include_usage chunk (none without it)."""
        assembled = assemble(body) or {}
        usage = assembled.get("usage") if isinstance(assembled.get("usage"), dict) else {}
        error = assembled.get("error")
        self.context.stats.finished(
            status=response.status, latency_ms=(time.perf_counter() - start) * 1000.0,
            error=f"in-stream error: {error.get('message', '')}"[:500] if isinstance(error, dict) else None,
            cache_hit=False,
            prompt_tokens=usage.get("prompt_tokens", 0) if isinstance(usage.get("prompt_tokens"), int) else 0,
            completion_tokens=usage.get("completion_tokens", 0) if isinstance(usage.get("completion_tokens"), int) else 0,
            replies=_replies(request, assembled),
            tools=tool_counts(assembled),
        )


def _replies(request: ProxyRequest, reply: object) -> ReplyCounts:
    """The reply's reasoning counts; the reasoning interceptor's own split (request.meta) counts where it
    split text itself (its token estimate, and cut thoughts whose text it was told to drop)."""
    echo = bool((request.json or {}).get("echo"))
    counts = reply_counts(reply, echo=echo, estimated_reasoning_tokens=request.meta.get("reasoning_tokens"))
    cut = request.meta.get("truncated_reasoning", 0)
    return counts._replace(truncated_reasoning=max(counts.truncated_reasoning, cut)) if cut and not echo else counts


def _reply(response: ProxyResponse) -> object:
    """A successful JSON reply's parsed body; None for errors and other content."""
    if not response.ok or not response.content_type.startswith("application/json"):
        return None
    return response.json()


def _usage(body: object) -> dict[str, int]:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return {}
    return {k: v for k, v in usage.items() if isinstance(v, int)}


def _error_text(response: ProxyResponse) -> str:
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return f"{response.status}: {body['error'].get('message', '')}"[:500]
    return f"{response.status}: {response.body[:200].decode(errors='replace')}"
