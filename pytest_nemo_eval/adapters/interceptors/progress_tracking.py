"""progress_tracking (NeMo Evaluator's interceptor of that name): samples done and the rate, per route.

Counts as NeMo Evaluator does: a sample is processed when the model answered it (HTTP 200, not a
cache hit: a retry's failed attempt or a replayed answer is not progress; a stream counts when it
ended whole). Cache hits are counted beside it (`cache_hits`), and the rate is the processed
samples per second since this route's first request (a resumed count excluded).

Every `progress_tracking_interval` samples, and every `progress_tracking_interval_seconds` when the
count moved in between, the progress is
- written to `<output_dir>/progress.json` (default: the route's log folder, `<log_dir>/<benchmark>/`),
  replaced atomically; a route started again on the same folder resumes its count from it, as
  NeMo's `progress` file does. `read_progress` / `describe` give what a terminal shows;
- sent to `progress_tracking_url` when set (shell variables expanded), with `request_method`
  (NeMo's PATCH), as JSON: `{"samples_processed": N}` (NeMo's body) plus `benchmark`, `cache_hits`,
  `rate_per_s`, `elapsed_s`. Sent from a background thread, latest value first, so a slow or dead
  webhook never delays an answer; a failure is logged (once per kind), never raised.
When the route closes (the end of the benchmark) the last count is written and sent.

Params as NeMo Evaluator's (`progress_tracking_url`, `progress_tracking_interval`,
`progress_tracking_interval_seconds`, `request_method`, `output_dir`), except that
`progress_tracking_url` defaults to none (NeMo's default `http://localhost:8000` is its launcher's
own server; here a webhook is sent only where one is named). Off unless configured, as in NeMo.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, Interceptor, StrictConfig, register_interceptor

LOGGER = logging.getLogger(__name__)
PROGRESS_FILE = "progress.json"


class ProgressTrackingConfig(StrictConfig):
    enabled: bool = True
    progress_tracking_url: str | None = None
    progress_tracking_interval: int = Field(default=1, gt=0)  # every N processed samples
    progress_tracking_interval_seconds: float | None = Field(default=None, gt=0)  # and every N seconds if it moved
    request_method: str = "PATCH"
    output_dir: Path | None = None  # where progress.json goes; None: the route's log folder
    webhook_timeout_s: float = Field(default=5.0, gt=0)


def read_progress(folder: str | Path) -> dict[str, Any] | None:
    """The progress a route last wrote to `folder` (None when none, or unreadable)."""
    try:
        value = json.loads((Path(folder) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def describe(progress: dict[str, Any]) -> str:
    """One terminal line's worth: `120 samples processed (+40 cached), 3.2 samples/s`."""
    line = f"{progress.get('samples_processed', 0)} samples processed"
    if progress.get("cache_hits"):
        line += f" (+{progress['cache_hits']} cached)"
    rate = progress.get("rate_per_s")
    if rate is not None:
        line += f", {rate:.2f} samples/s"
    return line


@register_interceptor("progress_tracking")
class ProgressTrackingInterceptor(Interceptor):
    config_model = ProgressTrackingConfig
    order = 5  # outside everything but stats: sees the answer as the client gets it (cache hits marked)
    config: ProgressTrackingConfig

    def __init__(self, config: ProgressTrackingConfig, context) -> None:
        super().__init__(config, context)
        self.folder = Path(config.output_dir) if config.output_dir else context.log_dir / context.benchmark
        self.url = os.path.expandvars(config.progress_tracking_url) if config.progress_tracking_url else None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        previous = read_progress(self.folder) or {}
        resumed = previous.get("samples_processed")
        self._resumed = resumed if isinstance(resumed, int) and resumed >= 0 else 0
        self._processed = self._resumed
        self._cache_hits = 0
        self._started: float | None = None
        self._reported = (self._processed, 0)  # the counts last written / queued
        self._outbox: dict[str, Any] | None = None  # the latest payload the sender has not sent yet
        self._closed = False
        self._warned: set[str] = set()
        self._threads: list[threading.Thread] = []
        if self.url:
            self._threads.append(threading.Thread(target=self._send_loop, name="progress-webhook", daemon=True))
        if config.progress_tracking_interval_seconds:
            self._threads.append(threading.Thread(target=self._timer_loop, name="progress-timer", daemon=True))
        for thread in self._threads:
            thread.start()

    # --- counting -----------------------------------------------------------------------------------------

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        with self._lock:
            if self._started is None:
                self._started = time.monotonic()
        response = call_next(request)
        if response.stream is not None:
            response.stream.on_finish(lambda body, complete: self._count(response.status == 200 and complete, False))
        else:
            self._count(response.status == 200, response.from_cache)
        return response

    def _count(self, answered: bool, from_cache: bool) -> None:
        if not answered:
            return
        with self._lock:
            if from_cache:
                self._cache_hits += 1
                return
            self._processed += 1
            due = self._processed % self.config.progress_tracking_interval == 0
        if due:
            self._report()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self._started if self._started is not None else 0.0
        fresh = self._processed - self._resumed
        return {
            "samples_processed": self._processed,
            "benchmark": self.context.benchmark,
            "cache_hits": self._cache_hits,
            "rate_per_s": round(fresh / elapsed, 3) if elapsed > 0 and fresh else None,
            "elapsed_s": round(elapsed, 3),
            "updated": time.time(),
        }

    # --- reporting ----------------------------------------------------------------------------------------

    def _report(self) -> None:
        """Write the progress file and queue the webhook, when a count moved since the last report."""
        with self._lock:
            if (self._processed, self._cache_hits) == self._reported:
                return
            self._reported = (self._processed, self._cache_hits)
            payload = self._snapshot_locked()
            if self.url:
                self._outbox = payload
                self._changed.notify_all()
        self._write(payload)

    def _write(self, payload: dict[str, Any]) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = self.folder / f".{PROGRESS_FILE}.{os.getpid()}.{threading.get_ident()}"
            temporary.write_text(json.dumps(payload) + "\n", encoding="utf-8")
            os.replace(temporary, self.folder / PROGRESS_FILE)
        except OSError as exc:
            self._warn("file", f"progress_tracking: could not write {self.folder / PROGRESS_FILE}: {exc}")

    def _timer_loop(self) -> None:
        interval = self.config.progress_tracking_interval_seconds or 1.0
        with self._lock:
            while not self._closed:
                self._changed.wait(interval)
                if self._closed:
                    return
                self._lock.release()
                try:
                    self._report()
                finally:
                    self._lock.acquire()

    def _send_loop(self) -> None:
        while True:
            with self._lock:
                while self._outbox is None and not self._closed:
                    self._changed.wait()
                payload, self._outbox = self._outbox, None
                if payload is None:  # closed, nothing left to send
                    return
            self._send(payload)

    def _send(self, payload: dict[str, Any]) -> None:
        import requests

        try:
            reply = requests.request(self.config.request_method, self.url, json=payload,
                                     timeout=self.config.webhook_timeout_s)
        except requests.RequestException as exc:
            self._warn("unreachable", f"progress_tracking: the webhook {self.url} is unreachable: {exc}")
            return
        if not 200 <= reply.status_code < 300:
            self._warn(f"status {reply.status_code}", f"progress_tracking: the webhook {self.url} answered "
                       f"{reply.status_code}: {reply.text[:200]}")

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            LOGGER.warning("%s (further such failures are not logged)", message)

    def close(self) -> None:
        """The route is done: the last count written and sent (waits for the webhook up to its timeout)."""
        self._report()
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=self.config.webhook_timeout_s + 1)
