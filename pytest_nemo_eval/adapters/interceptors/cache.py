"""Cache: answer a request seen before from the response cache, store new answers.

The store is one SQLite (WAL) file shared by threads and processes
(response_cache.py says why). If the cache cannot be written (locked past
`busy_timeout_s`, disk full), the upstream reply is still returned to the
client — a result is never lost to the cache — and `cache_errors` counts it.

The key hashes the whole request body canonically (`cache_key`), so every
field the model sees — `tools`, `tool_choice`, `response_format`, messages'
`tool_calls` — separates entries; a hit returns the stored body byte for byte.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import ChainContext, Handler, Interceptor, StrictConfig, register_interceptor
from ..response_cache import CachedResponse, CacheError, ResponseCache, cache_key  # noqa: F401 - re-exported
from ..streaming import wants_stream

log = logging.getLogger(__name__)


class CacheConfig(StrictConfig):
    """Response cache in a shared SQLite (WAL) file.

    `reuse`: serve hits, store misses. `refresh`: always ask upstream, overwrite.
    `off`: neither. `namespace` separates caches of different models; None = the
    upstream's model id from `/v1/models` (falls back to the request's `model`).
    `path=None` uses the proxy's `cache_path`. `busy_timeout_s`: how long a write
    waits for another process's lock before giving up on storing (never on serving).
    """

    mode: Literal["reuse", "refresh", "off"] = "reuse"
    path: Path | None = None
    namespace: str | None = None
    busy_timeout_s: float = Field(default=5.0, ge=0)


@register_interceptor("cache")
class CacheInterceptor(Interceptor):
    config_model = CacheConfig
    config: CacheConfig
    order = 70  # keys the request as sent (inside the modifiers), stores the raw reply (outside retry)
    shorthand_field = "mode"

    @classmethod
    def enabled(cls, config: Any) -> bool:
        return config is not None and config.mode != "off"

    def __init__(self, config: CacheConfig, context: ChainContext) -> None:
        super().__init__(config, context)
        self.cache = context.open_cache(config.path, config.busy_timeout_s)

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        if request.method != "POST" or request.json is None or wants_stream(request.json):
            return call_next(request)  # streams are never answered from nor stored in the cache (streaming.py)
        namespace = self.config.namespace or self.context.upstream_model_id() or str(request.json.get("model", ""))
        key = cache_key(namespace, request.method, request.path, request.json)
        request.meta["cache_key"] = key
        if self.config.mode == "reuse":
            hit = self._guarded(self.cache.get, key)
            if hit is not None:
                return ProxyResponse(hit.status, hit.body, hit.content_type, from_cache=True)
        response = call_next(request)
        if response.ok and response.json() is not None:
            entry = CachedResponse(response.status, response.content_type, response.body)
            self._guarded(self.cache.put, key, entry, replace=self.config.mode == "refresh")
        return response

    def _guarded(self, operation, *args, **kwargs):
        """A cache failure costs a cache hit or a stored entry, never the request."""
        try:
            return operation(*args, **kwargs)
        except sqlite3.Error as exc:
            self.context.stats.add("cache_errors")
            if self.cache.warn_once(str(exc)):  # one line per cache file and problem, not one per request
                log.warning("response cache %s: %s (requests are served without the cache)", self.cache.path, exc)
            return None
