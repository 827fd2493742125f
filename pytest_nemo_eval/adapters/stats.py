"""`ProxyStats` (what callers read) and `StatsRecorder` (what a route writes to).

Counters are exact: every finished request is counted once, as a success or an
error, under one lock. Latencies are kept in full (8 bytes per request) so
percentiles are exact and totals across routes can be merged.
"""

from __future__ import annotations

import math
import threading
from array import array
from typing import Any, Iterable, NamedTuple

from pydantic import BaseModel


class ProxyStats(BaseModel):
    """Counters of one route (or all routes). `requests` = finished requests
    (successes + errors); `in_flight` = started, not finished — together they are
    the progress of a long benchmark."""

    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    cache_hits: int = 0
    cache_errors: int = 0
    retries: int = 0
    upstream_calls: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    # tool traffic: answers (choices) carrying tool calls, the calls in them, and answers the server marked
    # as a tool call it could not parse (vLLM's `stop_reason` "tool_call_<why>", the raw text in `content`)
    tool_call_replies: int = 0
    tool_calls: int = 0
    tool_call_errors: int = 0
    # requests carrying top-level fields the server ignored (it names them in X-Nemo-Ignored-Fields), and the names
    ignored_field_requests: int = 0
    ignored_fields: list[str] = []
    status_counts: dict[str, int] = {}
    last_error: str | None = None

    @property
    def successes(self) -> int:
        return self.requests - self.errors


class ToolCounts(NamedTuple):
    replies: int = 0  # choices whose message carries at least one tool call
    calls: int = 0  # tool calls in them
    errors: int = 0  # choices with a `stop_reason` starting "tool_call_" (a call the server could not parse)


TOOL_CALL_ERROR_PREFIX = "tool_call_"


def tool_counts(body: Any) -> ToolCounts:
    """The tool traffic of one OpenAI chat reply (or the reply a stream assembles to, streaming.assemble)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    replies = calls = errors = 0
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        made = message.get("tool_calls") if isinstance(message, dict) else None
        if isinstance(made, list) and made:
            replies += 1
            calls += len(made)
        stop_reason = choice.get("stop_reason")
        if isinstance(stop_reason, str) and stop_reason.startswith(TOOL_CALL_ERROR_PREFIX):
            errors += 1
    return ToolCounts(replies, calls, errors)


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile: a value that really occurred."""
    if not sorted_values:
        return None
    rank = min(len(sorted_values), max(1, math.ceil(fraction * len(sorted_values))))
    return round(sorted_values[rank - 1], 3)


class StatsRecorder:
    """Thread-safe accumulator for one route."""

    _COUNTERS = ("requests", "errors", "in_flight", "cache_hits", "cache_errors", "retries", "upstream_calls",
                 "prompt_tokens", "completion_tokens", "reasoning_tokens", "tool_call_replies", "tool_calls",
                 "tool_call_errors", "ignored_field_requests")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latencies_ms = array("d")
        self._counts = dict.fromkeys(self._COUNTERS, 0)
        self._status_counts: dict[str, int] = {}
        self._last_error: str | None = None
        self.ignored_fields: set[str] = set()

    def ignored(self, names: list[str]) -> list[str]:
        """Count a request whose fields the server ignored; returns the names not seen before (logged once)."""
        with self._lock:
            self._counts["ignored_field_requests"] += 1
            new = [name for name in names if name not in self.ignored_fields]
            self.ignored_fields.update(new)
            return new

    def add(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[counter] += amount

    def started(self) -> None:
        self.add("in_flight")

    def finished(self, *, status: int, latency_ms: float | None, error: str | None, cache_hit: bool,
                 prompt_tokens: int = 0, completion_tokens: int = 0, reasoning_tokens: int = 0,
                 tools: "ToolCounts | None" = None) -> None:
        """Record one finished request; everything in one critical section, so totals add up."""
        key = str(status)
        with self._lock:
            counts = self._counts
            counts["in_flight"] -= 1
            counts["requests"] += 1
            if error is not None:
                counts["errors"] += 1
                self._last_error = error
            if cache_hit:
                counts["cache_hits"] += 1
            counts["prompt_tokens"] += prompt_tokens
            counts["completion_tokens"] += completion_tokens
            counts["reasoning_tokens"] += reasoning_tokens
            if tools is not None:
                counts["tool_call_replies"] += tools.replies
                counts["tool_calls"] += tools.calls
                counts["tool_call_errors"] += tools.errors
            self._status_counts[key] = self._status_counts.get(key, 0) + 1
            if latency_ms is not None:  # None: refused before any work, not a latency sample
                self._latencies_ms.append(latency_ms)

    def snapshot(self) -> ProxyStats:
        return merge_stats([self])

    def _raw(self) -> tuple[dict[str, int], dict[str, int], array, str | None]:
        with self._lock:
            return dict(self._counts), dict(self._status_counts), array("d", self._latencies_ms), self._last_error


def merge_stats(recorders: Iterable[StatsRecorder]) -> ProxyStats:
    """One `ProxyStats` over several routes (exact percentiles over all their latencies)."""
    counts = dict.fromkeys(StatsRecorder._COUNTERS, 0)
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    last_error = None
    ignored: set[str] = set()
    for recorder in recorders:
        ignored |= recorder.ignored_fields
        rc, rs, rl, re_ = recorder._raw()
        for key, value in rc.items():
            counts[key] += value
        for key, value in rs.items():
            statuses[key] = statuses.get(key, 0) + value
        latencies.extend(rl)
        last_error = re_ or last_error
    latencies.sort()
    return ProxyStats(**counts, status_counts=statuses, last_error=last_error, ignored_fields=sorted(ignored),
                      latency_p50_ms=_percentile(latencies, 0.50), latency_p99_ms=_percentile(latencies, 0.99))
