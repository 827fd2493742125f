"""One HTTP call to the upstream model server, over pooled keep-alive connections.

`requests.Session` is not thread-safe, so each proxy worker thread keeps its
own; the WSGI server's thread pool is fixed, so so is the number of sessions.
Failures become typed exceptions the retry interceptor understands.
"""

from __future__ import annotations

import os
import threading

import requests
from requests.adapters import HTTPAdapter

from .exchange import ProxyRequest, ProxyResponse

# Not forwarded either way: they describe one hop, not the message.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "host", "content-length", "content-encoding", "accept-encoding",
})

# Set again by our own server for the reply it sends.
_NOT_RELAYED = HOP_BY_HOP | {"content-type", "server", "date"}


class UpstreamError(Exception):
    """The upstream could not be asked (connection) or did not answer in time."""

    status = 502
    error_type = "upstream_unavailable"


class UpstreamUnreachable(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    status = 504
    error_type = "upstream_timeout"


class Upstream:
    """The model server behind the proxy. `api_key_env` names the env var holding its key."""

    def __init__(self, base_url: str, *, api_key_env: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[: -len("/v1")]
        self.api_key: str | None = None
        if api_key_env:
            self.api_key = os.environ.get(api_key_env)
            if not self.api_key:
                raise ValueError(
                    f"Upstream API key variable {api_key_env} is not set (or empty). "
                    f"Export {api_key_env}=<key>, or drop upstream_api_key_env if the server needs no key."
                )
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # never route loopback model traffic through a proxy from the env
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def send(self, request: ProxyRequest, *, timeout_s: float, connect_timeout_s: float) -> ProxyResponse:
        """Forward once. Returns any HTTP answer as-is; raises `UpstreamError` on no answer."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Accept-Encoding"] = "identity"  # keep the body bytes exactly as the model wrote them
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url + request.path + (f"?{request.query}" if request.query else "")
        try:
            reply = self._session().request(
                request.method, url, data=request.body or None, headers=headers,
                timeout=(connect_timeout_s, timeout_s), allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise UpstreamTimeout(
                f"Upstream {self.base_url} did not answer {request.method} {request.path} within {timeout_s:g} s "
                f"({type(exc).__name__}). The model may be hung or overloaded; raise retry.timeout_s if "
                "generations are legitimately this slow."
            ) from exc
        except requests.RequestException as exc:
            raise UpstreamUnreachable(
                f"Upstream {self.base_url} is unreachable for {request.method} {request.path}: {_short(exc)}. "
                "Check that the model server is running and the --upstream URL is right."
            ) from exc
        extra = {k: v for k, v in reply.headers.items() if k.lower() not in _NOT_RELAYED}
        return ProxyResponse(
            status=reply.status_code,
            body=reply.content,
            content_type=reply.headers.get("Content-Type", "application/octet-stream"),
            headers=extra,
        )

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()


def _short(exc: Exception) -> str:
    """The innermost reason ('Connection refused'), not urllib3's nested repr."""
    reason = exc
    while reason.__context__ is not None and not isinstance(reason, ConnectionRefusedError):
        reason = reason.__context__
    text = str(reason) or type(reason).__name__
    return text if len(text) < 300 else text[:300] + "…"
