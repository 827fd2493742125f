"""The request and response objects interceptors see.

Bodies are kept as the exact bytes received; JSON is parsed lazily and only
re-serialized when an interceptor replaces it, so an untouched upstream reply
reaches the client byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_UNPARSED = object()


def dumps(value: Any) -> bytes:
    """Compact JSON, the form we send when an interceptor rewrote a body."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class ProxyRequest:
    """One client request on its way to the upstream.

    `path` is the OpenAI path without the benchmark prefix (e.g. `/v1/completions`).
    `json` is the parsed body for POSTs (always a dict there: the server rejects
    anything else with a 400). Interceptors replace it with `set_json`.
    `meta` carries facts between interceptors (cache hit, reasoning tokens, retries).
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    benchmark: str
    json: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def set_json(self, value: dict[str, Any]) -> None:
        self.json = value
        self.body = dumps(value)


@dataclass
class ProxyResponse:
    """One response on its way back to the client; `body` bytes are what is sent."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False
    from_proxy: bool = False  # an error the proxy made up: not the upstream's to retry
    # a streamed reply (SSE) relayed as it arrives: `body` stays empty; interceptors that need the
    # whole reply register a finisher on it (streaming.StreamBody.on_finish)
    stream: Any = None
    _json: Any = field(default=_UNPARSED, repr=False)

    def json(self) -> Any:
        """Parsed body, or None when it is not JSON (parsed once, then remembered)."""
        if self._json is _UNPARSED:
            try:
                self._json = json.loads(self.body)
            except ValueError:
                self._json = None
        return self._json

    def set_json(self, value: Any) -> None:
        self._json = value
        self.body = dumps(value)
        self.content_type = "application/json"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def error_response(status: int, message: str, error_type: str) -> ProxyResponse:
    """An OpenAI-shaped error body, so harnesses print the message as they would the model's."""
    return ProxyResponse(status, dumps({"error": {"message": message, "type": error_type, "code": status}}),
                         from_proxy=True)
