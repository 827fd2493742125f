"""SIGTERM ends a harness run like Ctrl-C does, so the runtime's cleanup runs.

Python's default SIGTERM action kills the process on the spot: no `finally`, so a
CI job's timeout or a plain `kill` of pytest left the harness's container (or
its process group, which lives in a session of its own) running. While a
harness runs in the main thread and nobody else handles SIGTERM, it raises
KeyboardInterrupt instead; the previous handler is restored afterwards.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class TerminatedBySignal(KeyboardInterrupt):
    """SIGTERM arrived while a harness ran; handled like Ctrl-C (the harness is cleaned up first)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise TerminatedBySignal(f"signal {signal.Signals(signum).name} while a harness ran")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; its own SIGTERM handling applies
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        yield  # the application handles SIGTERM itself: leave that alone
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
