"""`ProxyProcess`: the proxy as a child process (`nemo-eval proxy`), with the same URL API.

For when the proxy must outlive or be isolated from the caller (crash-resume,
several proxies sharing one cache). The child runs in its own process group and
is stopped with SIGINT, then SIGKILL, on stop, on error and on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path

from pytest_nemo_eval.processes import kill_process_group, start_process_group

from .cli import READY_PREFIX
from .config import AdapterConfig


class ProxyProcessError(RuntimeError):
    pass


class ProxyProcess:
    def __init__(self, upstream_url: str, config: AdapterConfig | None = None, *, cache_path: str | Path | None = None,
                 port: int = 0, log_dir: str | Path | None = None, upstream_api_key_env: str | None = None,
                 startup_timeout_s: float = 30.0) -> None:
        self.upstream_url = upstream_url
        self.config = config or AdapterConfig()
        self.cache_path, self.port, self.log_dir = cache_path, port, log_dir
        self.upstream_api_key_env = upstream_api_key_env
        self.startup_timeout_s = startup_timeout_s
        self.url: str | None = None
        self.process: subprocess.Popen | None = None
        self._output: deque[str] = deque(maxlen=50)
        self._config_file: Path | None = None

    def start(self) -> "ProxyProcess":
        fd, name = tempfile.mkstemp(prefix="nemo-eval-proxy-", suffix=".yaml")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.config.model_dump(mode="json", exclude_defaults=True), handle)  # JSON is YAML
        self._config_file = Path(name)
        command = [sys.executable, "-m", "pytest_nemo_eval.adapters.cli", "--upstream", self.upstream_url,
                   "--config", name, "--port", str(self.port), "--exit-with-parent"]
        for flag, value in (("--cache", self.cache_path), ("--log-dir", self.log_dir),
                            ("--api-key-env", self.upstream_api_key_env)):
            if value:
                command += [flag, str(value)]
        self.process = start_process_group(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = threading.Event()
        threading.Thread(target=self._read_output, args=(ready,), daemon=True).start()
        try:
            if not ready.wait(self.startup_timeout_s) or self.url is None:
                raise ProxyProcessError(
                    f"The proxy process did not report ready within {self.startup_timeout_s:g} s "
                    f"(exit code {self.process.poll()}). Its output:\n" + "".join(self._output)
                )
        except BaseException:
            self.stop()
            raise
        return self

    def _read_output(self, ready: threading.Event) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._output.append(line)
            if line.startswith(READY_PREFIX) and self.url is None:
                self.url = line[len(READY_PREFIX):].split()[0]
                ready.set()
        ready.set()  # exited before ready: start() reports the output

    def kill(self) -> None:
        """SIGKILL, no cleanup: simulates a crash."""
        if self.process is not None:
            kill_process_group(self.process, grace_s=0, first_signal=signal.SIGKILL)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is not None:
            kill_process_group(self.process, grace_s=timeout_s, first_signal=signal.SIGINT)
        if self._config_file is not None:
            self._config_file.unlink(missing_ok=True)
            self._config_file = None

    def output(self) -> str:
        return "".join(self._output)

    def __enter__(self) -> "ProxyProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

