"""Per-benchmark isolation: a table of named routes, each with its own chain and stats.

Design: one proxy process serves many benchmarks at once. Each benchmark gets a
path prefix `/b/<name>` (its base URL; the harness appends `/v1/...`), its own
`AdapterConfig`, interceptor instances, log files and `StatsRecorder`. What is
shared is only what should be: the upstream connection pools and the cache
file (same request, same answer, whichever benchmark asked). Requests without
a prefix use the route named `default`. Registration is idempotent for the same
config (an xdist worker may retry) and refused for a different one.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from .config import AdapterConfig
from .exchange import ProxyRequest, ProxyResponse, error_response
from .chain import build_chain
from .registry import ChainContext, Handler, Interceptor
from .response_cache import ResponseCache
from .stats import ProxyStats, StatsRecorder, merge_stats
from .streaming import wants_stream
from .upstream import Upstream

DEFAULT_ROUTE = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RouteConflict(ValueError):
    """The name is taken by a benchmark with another config."""


@dataclass
class Route:
    name: str
    config: AdapterConfig
    handler: Handler
    interceptors: list[Interceptor]
    stats: StatsRecorder


class RouteTable:
    def __init__(self, upstream: Upstream, *, cache_path: Path | None, log_dir: Path) -> None:
        self.upstream = upstream
        self.cache_path = cache_path
        self.log_dir = log_dir
        self._routes: dict[str, Route] = {}
        self._caches: dict[Path, ResponseCache] = {}
        self._lock = threading.Lock()
        self._model_id: str | None = None
        self._model_id_known = False
        self._probe_lock = threading.Lock()

    def add(self, name: str, config: AdapterConfig) -> Route:
        """Create the route, or return the existing one when its config is the same."""
        if not _NAME.match(name):
            raise ValueError(
                f"Benchmark name {name!r} cannot be a URL path segment. Use 1-128 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit (e.g. replace '/' with '.')."
            )
        with self._lock:
            existing = self._routes.get(name)
            if existing is not None:
                if existing.config == config:
                    return existing
                raise RouteConflict(
                    f"Benchmark {name!r} is already registered on this proxy with a different adapter config. "
                    "Give each benchmark a unique name, or register it again with the same config."
                )
            stats = StatsRecorder()
            context = ChainContext(name, self.upstream, stats, self.log_dir, self._open_cache, self._upstream_model_id)
            handler, interceptors = build_chain(config, context, functools.partial(self._forward, stats))
            route = Route(name, config, handler, interceptors, stats)
            self._routes[name] = route
            return route

    def get(self, name: str) -> Route | None:
        return self._routes.get(name)

    def names(self) -> list[str]:
        return list(self._routes)

    def stats(self, name: str | None = None) -> ProxyStats:
        """One route's stats, or the totals over all routes when `name` is None."""
        if name is None:
            return merge_stats([route.stats for route in list(self._routes.values())])
        route = self._routes.get(name)
        if route is None:
            raise KeyError(f"No benchmark {name!r} on this proxy; registered: {', '.join(self._routes) or 'none'}.")
        return route.stats.snapshot()

    def close(self) -> None:
        with self._lock:
            for route in self._routes.values():
                for interceptor in route.interceptors:
                    interceptor.close()
            for cache in self._caches.values():
                cache.close()
            self._caches.clear()

    def _forward(self, stats: StatsRecorder, request: ProxyRequest) -> ProxyResponse:
        """The innermost handler: one upstream call (retries wrap it)."""
        stats.add("upstream_calls")
        response = self.upstream.send(
            request,
            timeout_s=request.meta.get("timeout_s", 600.0),
            connect_timeout_s=request.meta.get("connect_timeout_s", 5.0),
            stream=wants_stream(request.json),
        )
        streamed = response.content_type.startswith("text/event-stream")  # relayed whole, not parsed
        if request.json is not None and response.ok and not streamed and response.json() is None:
            return error_response(
                502,
                f"Upstream {self.upstream.base_url} answered {request.method} {request.path} with a non-JSON body "
                f"({response.content_type}, {len(response.body)} bytes: {response.body[:120]!r}). The OpenAI API "
                "answers JSON: check that --upstream points at the model server and not at another service.",
                "upstream_bad_response",
            )
        return response

    def _open_cache(self, path: Path | None, busy_timeout_s: float) -> ResponseCache:
        """One `ResponseCache` per file, shared by every route that names it."""
        path = path or self.cache_path
        if path is None:
            raise ValueError(
                "The adapter config enables the response cache but no cache file was given. "
                "Pass cache_path= to ProxyServer (--cache on the CLI) or set cache.path."
            )
        path = Path(path).resolve()
        cache = self._caches.get(path)
        if cache is None:
            cache = self._caches[path] = ResponseCache(path, busy_timeout_s=busy_timeout_s)
        return cache

    def _upstream_model_id(self) -> str | None:
        """The served model's id (first of `/v1/models`), asked once; keys the cache per model."""
        if not self._model_id_known:
            with self._probe_lock:
                if not self._model_id_known:
                    self._probe_model_id()
        return self._model_id

    def _probe_model_id(self) -> None:
        probe = ProxyRequest("GET", "/v1/models", "", {}, b"", DEFAULT_ROUTE)
        try:
            reply = self.upstream.send(probe, timeout_s=10.0, connect_timeout_s=5.0)
        except Exception:  # upstream down: fall back to the request's `model`, ask again next time
            return
        data = reply.json() if reply.ok else None
        models = data.get("data") if isinstance(data, dict) else None
        first = models[0] if isinstance(models, list) and models and isinstance(models[0], dict) else {}
        self._model_id = first.get("id") if isinstance(first.get("id"), str) else None
        self._model_id_known = True
