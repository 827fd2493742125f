"""`Deployment`: `nemo-eval deploy` as a child process group, for fixtures, benchmarks and scripts.

The child runs in its own session (process group, processes.py) so `stop()` can
end it and everything it spawned (tritonserver and its stub, or a Ray head) at
once: SIGTERM first (clean shutdown), SIGKILL after a grace period. `stop()` is idempotent
and also registered with atexit, so an interrupted test run leaves nothing.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import requests
from pytest_nemo_eval.processes import kill_process_group, start_process_group
from pytest_nemo_eval.serving.deploy_cli import parse_ready_line
from pytest_nemo_eval.serving.settings import ServeSettings

LOG_TAIL_LINES = 40


class DeploymentError(RuntimeError):
    """The deployment did not come up; the message carries the reason and the log's last lines."""


class DeploymentSettings(ServeSettings):
    startup_timeout_s: float = 600.0
    stop_grace_s: float = 30.0  # tritonserver unloads the model before it exits: seconds on a busy machine
    log_path: Path | None = None

    def command(self) -> list[str]:
        """`nemo-eval deploy` with the serving settings as one JSON object (the launcher's own fields stay here)."""
        serve = ServeSettings.model_validate(self.model_dump(include=set(ServeSettings.model_fields)))
        return [sys.executable, "-m", "pytest_nemo_eval.cli", "deploy", "--settings-json", serve.model_dump_json()]


class Deployment:
    """A running `nemo-eval deploy`; use as a context manager or start()/stop()."""

    def __init__(self, settings: DeploymentSettings) -> None:
        self.settings = settings
        self.url = ""
        self.model_id = ""
        self.startup_s: float | None = None
        self.process: subprocess.Popen | None = None
        self.log_path = settings.log_path
        self._tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> "Deployment":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def start(self) -> "Deployment":
        if self.process is not None:
            return self
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="nemo-eval-deploy-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self.process = start_process_group(
            self.settings.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        )
        atexit.register(self.stop)
        self._reader = threading.Thread(target=self._pump_log, name="nemo-eval-deploy-log", daemon=True)
        self._reader.start()
        try:
            self._wait_ready(began)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began
        return self

    def _pump_log(self) -> None:
        """Copy the child's output to the log file, keep a tail, spot the readiness line."""
        assert self.process is not None and self.process.stdout is not None and self.log_path is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self._tail.append(line)
                ready = None if self._ready.is_set() else parse_ready_line(line)
                if ready:
                    self.url, self.model_id = ready
                    self._ready.set()

    def _wait_ready(self, began: float) -> None:
        assert self.process is not None
        deadline = began + self.settings.startup_timeout_s
        while not self._ready.wait(0.2):
            if self.process.poll() is not None:
                self._reader.join(5)  # type: ignore[union-attr]
                raise DeploymentError(self._failure(f"`nemo-eval deploy` exited with code {self.process.returncode} "
                                                    "before it was ready"))
            if time.monotonic() > deadline:
                raise DeploymentError(self._failure(f"`nemo-eval deploy` was not ready within "
                                                    f"{self.settings.startup_timeout_s:g} s (raise startup_timeout_s "
                                                    "for a large checkpoint)"))
        try:
            requests.get(f"{self.url}/v1/health", timeout=30).raise_for_status()
        except requests.RequestException as exc:
            raise DeploymentError(self._failure(f"{self.url}/v1/health does not answer ({exc})")) from None

    def _failure(self, reason: str) -> str:
        tail = "".join(self._tail).rstrip() or "(no output)"
        return (f"Deploying {self.settings.checkpoint} failed: {reason}. Full log: {self.log_path}. "
                f"Last {LOG_TAIL_LINES} lines:\n{tail}")

    def log_tail(self) -> str:
        return "".join(self._tail)

    def stop(self) -> None:
        """End the whole process group: SIGTERM, then SIGKILL after stop_grace_s. Safe to call twice."""
        process, self.process = self.process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        # a deploy process that already died left only orphans (a Ray head's raylet, GCS, workers): nothing is
        # unloading in an orderly way, so they get a short grace, not the one a live server's shutdown needs
        grace = self.settings.stop_grace_s if process.poll() is None else min(self.settings.stop_grace_s, 2.0)
        kill_process_group(process, grace_s=grace)
        if self._reader is not None:
            self._reader.join(5)
