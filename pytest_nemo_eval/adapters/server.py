"""`ProxyServer`: run the interceptor proxy in this process, on a real WSGI server.

Why waitress: a production multi-threaded WSGI server in pure Python (installs
anywhere, no fork, so stats stay in one process), with an async I/O loop in
front of a fixed thread pool — idle keep-alive connections cost no thread, and
the pool bounds the upstream connections. Threads (not processes) because the
work is waiting on the model, and per-benchmark stats must be in one place.

    with ProxyServer("http://127.0.0.1:8000", AdapterConfig(cache="reuse"), cache_path=p) as proxy:
        url = proxy.register_benchmark("gsm8k", AdapterConfig(...))   # -> proxy.url + "/b/gsm8k"
        ... harness uses f"{url}/v1/chat/completions" ...
        proxy.stats("gsm8k").requests
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import requests

from .app import ProxyApp
from .config import AdapterConfig
from .routes import DEFAULT_ROUTE, RouteTable
from .stats import ProxyStats
from .upstream import Upstream, UpstreamGate
from .wsgi_thread import ServerThread

__all__ = ["ProxyServer", "ProxyStats"]


class ProxyServer:
    def __init__(
        self,
        upstream_url: str,
        config: AdapterConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cache_path: str | Path | None = None,
        upstream_api_key_env: str | None = None,
        log_dir: str | Path | None = None,
        threads: int = 64,
        upstream_gate: UpstreamGate | None = None,
    ) -> None:
        self.upstream_url = upstream_url
        self.config = config or AdapterConfig()
        self.host, self.port = host, port
        self.cache_path = Path(cache_path) if cache_path else None
        self.upstream_api_key_env = upstream_api_key_env
        self.log_dir = Path(log_dir) if log_dir else None
        self.threads = threads
        self.upstream_gate = upstream_gate  # e.g. deploy the model on the first request that misses the cache
        self._table: RouteTable | None = None
        self._server: ServerThread | None = None
        self._tmp_log_dir: Path | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("ProxyServer.url is known only after start().")
        return self._server.url

    def start(self) -> "ProxyServer":
        """Bind, build the default route, serve on a background thread. Raises with a clear
        message on a bad key variable, an unusable cache file or a taken port."""
        if self._server is not None:
            return self
        if self.log_dir is None:
            self.log_dir = self._tmp_log_dir = Path(tempfile.mkdtemp(prefix="nemo-eval-proxy-logs-"))
        upstream = Upstream(self.upstream_url, api_key_env=self.upstream_api_key_env, gate=self.upstream_gate)
        self._table = RouteTable(upstream, cache_path=self.cache_path, log_dir=self.log_dir)
        try:
            self._table.add(DEFAULT_ROUTE, self.config)
            app = ProxyApp(self._table, lambda: self.url)
            self._server = ServerThread(app, host=self.host, port=self.port, threads=self.threads, name="nemo-eval-proxy",
                                        channel_timeout=600, ident="nemo-eval-proxy", clear_untrusted_proxy_headers=True)
        except OSError as exc:
            self._table.close()
            raise OSError(f"The proxy cannot listen on {self.host}:{self.port}: {exc}. Pick another --port (0 = any free port).") from exc
        except Exception:
            self._table.close()
            raise
        self._server.start()
        return self

    def serve_forever(self, parent_pid: int | None = None) -> None:
        """Block until Ctrl-C, or until `parent_pid` is no longer our parent (for the CLI).
        `stop()` is left to the caller."""
        assert self._server is not None, "call start() first"
        while self._server.is_alive():
            self._server.join(0.5)
            if parent_pid is not None and os.getppid() != parent_pid:
                return

    def stop(self) -> None:
        """Stop serving (in-flight requests get up to 5 s), close logs, caches and connections."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        if self._table is not None:
            self._table.close()
            self._table.upstream.close()
        if self._tmp_log_dir is not None:
            # a temporary log dir goes only if nothing was logged: logs a user asked for are never lost
            if not any(path.is_file() for path in self._tmp_log_dir.rglob("*")):
                shutil.rmtree(self._tmp_log_dir, ignore_errors=True)
            self._tmp_log_dir = None

    def __enter__(self) -> "ProxyServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def register_benchmark(self, name: str, config: AdapterConfig | None = None) -> str:
        """Give benchmark `name` its own route (config, logs, stats); returns its base URL.
        The harness's model URL is that base + `/v1/completions` or `/v1/chat/completions`."""
        self._require_started().add(name, config or self.config)
        return f"{self.url}/b/{name}"

    def stats(self, name: str | None = None) -> ProxyStats:
        """Stats of one benchmark (`"default"` for un-prefixed requests), or totals when None."""
        return self._require_started().stats(name)

    def wait_for_upstream(self, timeout_s: float) -> None:
        """Block until the upstream answers `/v1/models`; raise a clear error after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                reply = requests.get(f"{self._require_started().upstream.base_url}/v1/models", timeout=2)
                if reply.ok:
                    return
                last = f"HTTP {reply.status_code}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise TimeoutError(
            f"Upstream {self.upstream_url} did not answer GET /v1/models within {timeout_s:g} s (last: {last}). "
            "Start the model server first, or check the --upstream URL."
        )

    def _require_started(self) -> RouteTable:
        if self._table is None or self._server is None:
            raise RuntimeError("The proxy is not running; call start() (or use it as a context manager) first.")
        return self._table

