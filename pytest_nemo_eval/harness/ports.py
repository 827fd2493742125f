"""A TCP port of its own for every harness run, held until the run ends.

Harnesses bind local ports (nemo-evaluator's adapter server); with `-n N`
several run at once, as processes or `--network host` containers sharing the
host's ports. The kernel hands out a free port (bind to port 0) and an
exclusive lock file per port keeps every other run of this machine (any
pytest process or xdist worker) from being handed the same one while this run
holds it. A port taken meanwhile by an unrelated program makes the harness fail
loudly (nemo-evaluator exits when ADAPTER_PORT is taken), never share silently.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCK_DIR_ENV = "NEMO_EVAL_PORT_LOCK_DIR"
ATTEMPTS = 50


def lock_dir() -> Path:
    path = Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "nemo-eval-ports")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def reserved_port(host: str = "127.0.0.1") -> Iterator[int]:
    """Yield a port that is free now and that no other run here is given until the block ends."""
    for _ in range(ATTEMPTS):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        handle = open(lock_dir() / f"{port}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another run holds it (the kernel reissued a port released meanwhile)
            handle.close()
            continue
        try:
            yield port
        finally:
            handle.close()  # releases the lock
        return
    raise RuntimeError(f"no free TCP port found in {ATTEMPTS} attempts (all handed-out ports were reserved)")
