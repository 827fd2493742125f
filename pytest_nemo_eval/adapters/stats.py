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

from pydantic import BaseModel, computed_field


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
    # reasoning models: answers (choices) the model generated (echo scoring requests excluded), those cut off
    # by the token cap inside their thinking (`truncated_in_thinking`), NeMo Evaluator's finish_reason checks
    # (stop at the cap relabeled "length"; answers with no text and no tool call), and earlier turns'
    # reasoning put back into a conversation a harness sent again (interceptors/reasoning_replay.py)
    generations: int = 0
    truncated_reasoning: int = 0
    finish_reason_relabeled: int = 0
    empty_generations: int = 0
    reasoning_replayed: int = 0
    status_counts: dict[str, int] = {}
    last_error: str | None = None

    @property
    def successes(self) -> int:
        return self.requests - self.errors

    @computed_field  # type: ignore[prop-decorator]
    @property
    def truncated_reasoning_share(self) -> float | None:
        """The share of generated answers cut off inside their thinking (None before any answer)."""
        return round(self.truncated_reasoning / self.generations, 6) if self.generations else None


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


THINK_START, THINK_END = "<think>", "</think>"


def reasoning_text(holder: Any) -> str:
    """A message's (or completion choice's) separate reasoning: `reasoning_content`, else vLLM's newer `reasoning`."""
    if not isinstance(holder, dict):
        return ""
    for key in ("reasoning_content", "reasoning"):
        if isinstance(holder.get(key), str) and holder[key]:
            return holder[key]
    return ""


def answer_text(choice: Any) -> str:
    """The answer text of a choice: chat `message.content` (text parts joined) or completion `text`; "" if none."""
    if not isinstance(choice, dict):
        return ""
    message = choice.get("message")
    content = message.get("content") if isinstance(message, dict) else choice.get("text")
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def truncated_in_thinking(choice: Any, start: str = THINK_START, end: str = THINK_END) -> bool:
    """A choice the token cap cut off inside its thinking: `finish_reason` "length" and either no answer but a
    reasoning (a server that splits reasoning sends `content: ""` then) or an answer that opens `start` and
    never closes it (an endpoint that does not split). Tool calls are an answer."""
    if not isinstance(choice, dict) or choice.get("finish_reason") != "length":
        return False
    message = choice.get("message")
    if isinstance(message, dict) and message.get("tool_calls"):
        return False
    text = answer_text(choice)
    if not text.strip():
        return bool(reasoning_text(message if isinstance(message, dict) else choice).strip())
    return text.lstrip().startswith(start) and end not in text


def server_reasoning_tokens(usage: Any) -> int | None:
    """The server's own count (OpenAI's `usage.completion_tokens_details.reasoning_tokens`), None without one."""
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    value = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def share_of_tokens(completion_tokens: Any, reasoning_chars: int, total_chars: int) -> int:
    """`completion_tokens` split by the reasoning's share of the characters (the proxy has no tokenizer):
    exact when the model's tokens are characters, an estimate otherwise."""
    if not reasoning_chars or not total_chars or not isinstance(completion_tokens, int):
        return 0
    return round(completion_tokens * reasoning_chars / total_chars)


class ReplyCounts(NamedTuple):
    generations: int = 0  # choices of a generation reply
    truncated_reasoning: int = 0  # of them cut off inside their thinking
    reasoning_tokens: int = 0


def reply_counts(body: Any, *, echo: bool = False, estimated_reasoning_tokens: int | None = None) -> ReplyCounts:
    """The reasoning facts of one completion/chat reply as the client gets it (or a stream's assembly).

    Reasoning tokens: the server's `completion_tokens_details.reasoning_tokens`; else
    `estimated_reasoning_tokens` (the reasoning interceptor's count of what it split off itself); else, for
    a reply whose reasoning came in separate fields, `completion_tokens` split by character share."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or echo:
        return ReplyCounts()
    choices = [c for c in choices if isinstance(c, dict)]
    usage = body.get("usage")
    tokens = server_reasoning_tokens(usage)
    if tokens is None:
        tokens = estimated_reasoning_tokens
    if tokens is None:
        reasoning = sum(len(reasoning_text(c.get("message") if isinstance(c.get("message"), dict) else c))
                        for c in choices)
        answers = sum(len(answer_text(c)) for c in choices)
        tokens = share_of_tokens((usage or {}).get("completion_tokens") if isinstance(usage, dict) else None,
                                 reasoning, reasoning + answers)
    return ReplyCounts(len(choices), sum(truncated_in_thinking(c) for c in choices), tokens)


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
                 "tool_call_errors", "ignored_field_requests", "generations", "truncated_reasoning",
                 "finish_reason_relabeled", "empty_generations", "reasoning_replayed")

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
                 prompt_tokens: int = 0, completion_tokens: int = 0, replies: "ReplyCounts | None" = None,
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
            if replies is not None:
                counts["reasoning_tokens"] += replies.reasoning_tokens
                counts["generations"] += replies.generations
                counts["truncated_reasoning"] += replies.truncated_reasoning
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
