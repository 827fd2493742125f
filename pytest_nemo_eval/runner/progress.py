"""Progress lines for long benchmarks, printed by the process that owns the proxy.

The proxy counts every benchmark's requests, whichever xdist worker runs it,
so one thread in the controller (or the serial process) can report them all.
Plain lines, no carriage returns: they read well in a CI log. A route with the
`progress_tracking` interceptor adds its samples processed and their rate, read from the
`progress.json` the interceptor keeps in the route's log folder (`log_dir/<route>/`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from pytest_nemo_eval.runner.resources import ProxyControl

DEFAULT_ROUTE = "default"  # the proxy's route for requests without a benchmark prefix


class ProgressReporter:
    def __init__(self, proxy: ProxyControl, interval_s: float, write: Callable[[str], None],
                 expected_samples: int | None = None, log_dir: Path | None = None) -> None:
        self.proxy = proxy
        self.log_dir = log_dir  # the proxy's log folder: progress_tracking's progress.json per route
        self.interval_s = interval_s
        self.write = write
        self.expected_samples = expected_samples
        self._last: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemo-eval-progress", daemon=True)

    def start(self) -> "ProgressReporter":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.report_once()
            except Exception:  # the proxy may be stopping; progress is best effort
                continue

    def report_once(self) -> list[str]:
        """Write one line per benchmark that is running or made progress since the last line."""
        lines = []
        for name in self.proxy.benchmarks():
            if name == DEFAULT_ROUTE:
                continue
            stats = self.proxy.stats(name)
            done, in_flight = stats.get("requests", 0), stats.get("in_flight", 0)
            if done == self._last.get(name, 0) and not in_flight:
                continue
            self._last[name] = done
            expected = f" (limit {self.expected_samples} samples)" if self.expected_samples else ""
            lines.append(
                f"[nemo-eval] progress {name}: {done} requests done{expected}, {in_flight} in flight, "
                f"{stats.get('errors', 0)} errors, {stats.get('cache_hits', 0)} cache hits" + self._tracked(name)
            )
        for line in lines:
            self.write(line)
        return lines

    def _tracked(self, name: str) -> str:
        """`; progress_tracking: 120 samples processed (+40 cached), 3.20 samples/s`, when the route tracks it."""
        from pytest_nemo_eval.adapters.interceptors.progress_tracking import describe, read_progress

        tracked = read_progress(self.log_dir / name) if self.log_dir is not None else None
        return f"; progress_tracking: {describe(tracked)}" if tracked else ""
