"""One HTTP call to the upstream model server, over a keep-alive connection per thread.

Each proxy worker thread keeps one persistent `http.client` connection to the
upstream (the WSGI thread pool is fixed, so is the number of connections).
Why not `requests`: measured on this project's 2-core machines, a
`requests.Session` call costs ~1.9 ms against ~0.7 ms for `http.client` on the
same connection (benchmarks/bench_proxy.py) — that difference alone would break
the < 1 ms added-latency goal, and none of requests' extras (redirects, env
proxies, cookies) belong in a model proxy. A pooled connection the server has
closed meanwhile is retried once on a fresh one. Failures become typed
exceptions the retry interceptor understands.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from typing import Protocol
from urllib.parse import urlsplit

from .exchange import ProxyRequest, ProxyResponse
from .streaming import StreamBody

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
    retryable = True  # the retry interceptor asks again (after its backoff) unless this is False


class UpstreamUnreachable(UpstreamError):
    pass


class UpstreamLost(UpstreamUnreachable):
    """The model server cannot come back (its deployment failed): asking again cannot help."""

    retryable = False


class UpstreamTimeout(UpstreamError):
    status = 504
    error_type = "upstream_timeout"


class UpstreamGate(Protocol):
    """Stands before the upstream (runner/lazy_deployment.py: deploy on the first request that needs the model).

    `before_send`: a reply given without the upstream (None: send it on, after making sure the upstream is up;
    `UpstreamError` when it cannot be brought up). `ensure_live`: bring it up now, or raise `UpstreamError`."""

    def before_send(self, request: ProxyRequest) -> ProxyResponse | None: ...

    def ensure_live(self) -> None: ...


class Upstream:
    """The model server behind the proxy. `api_key_env` names the env var holding its key; `gate`, when
    given, is asked before every call (the upstream may not be running yet)."""

    def __init__(self, base_url: str, *, api_key_env: str | None = None, gate: UpstreamGate | None = None) -> None:
        self.gate = gate
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Upstream URL {base_url!r} is not an http(s) URL. Pass e.g. http://127.0.0.1:8000.")
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/v1"):
            prefix = prefix[: -len("/v1")]
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._prefix = prefix
        # for messages and logs: never the userinfo part of a URL (it may hold a password)
        self.base_url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{prefix}"
        self.api_key: str | None = None
        if api_key_env:
            self.api_key = os.environ.get(api_key_env)
            if not self.api_key:
                raise ValueError(
                    f"Upstream API key variable {api_key_env} is not set (or empty). "
                    f"Export {api_key_env}=<key>, or drop upstream_api_key_env if the server needs no key."
                )
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self, connect_timeout_s: float) -> tuple[http.client.HTTPConnection, bool]:
        """(this thread's connection, whether it was used before)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=connect_timeout_s,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=connect_timeout_s)
        self._local.conn = conn
        with self._lock:
            self._all.append(conn)
        return conn, False

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)

    def send(self, request: ProxyRequest, *, timeout_s: float, connect_timeout_s: float,
             stream: bool = False) -> ProxyResponse:
        """Forward once. Returns any HTTP answer as-is; raises `UpstreamError` on no answer.
        With `stream`, a 200 text/event-stream reply is not read here: its `stream` relays it chunk by chunk
        (timeout_s bounds each wait for the next chunk) and gives the connection back when it ends."""
        if self.gate is not None:
            local = self.gate.before_send(request)
            if local is not None:
                return local
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Accept-Encoding"] = "identity"  # keep the body bytes exactly as the model wrote them
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        target = self._prefix + request.path + (f"?{request.query}" if request.query else "")
        while True:
            conn, reused = self._connection(connect_timeout_s)
            try:
                if conn.sock is None:
                    conn.connect()  # connect timeout = the connection's own timeout
                    # head and body go out as two writes: without this, Nagle can hold the body back
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:  # refused, unroutable, or no accept within connect_timeout_s
                self._drop(conn)
                raise self._unreachable(request, exc) from exc
            try:
                conn.sock.settimeout(timeout_s)
                conn.request(request.method, target, body=request.body or None, headers=headers)
                reply = conn.getresponse()
                if stream and reply.status == 200 and (reply.getheader("Content-Type") or "").startswith(
                        "text/event-stream"):
                    return self._streamed(conn, reply)
                data = reply.read()
            except TimeoutError as exc:
                self._drop(conn)
                raise UpstreamTimeout(
                    f"Upstream {self.base_url} did not answer {request.method} {request.path} within {timeout_s:g} s. "
                    "The model may be hung or overloaded; raise retry.timeout_s if generations are legitimately "
                    "this slow."
                ) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(conn)
                if reused and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)):
                    continue  # the server closed our idle keep-alive connection: once more on a fresh one
                raise self._unreachable(request, exc) from exc
            if reply.will_close:
                self._drop(conn)
            extra = {k: v for k, v in reply.getheaders() if k.lower() not in _NOT_RELAYED}
            return ProxyResponse(
                status=reply.status,
                body=data,
                content_type=reply.getheader("Content-Type", "application/octet-stream"),
                headers=extra,
            )

    def _streamed(self, conn: http.client.HTTPConnection, reply: http.client.HTTPResponse) -> ProxyResponse:
        def chunks():
            while data := reply.read1(65536):
                yield data

        def release(complete: bool) -> None:
            if not complete or reply.will_close:  # a half-read reply cannot carry the next request
                reply.close()  # its socket file keeps the socket open after conn.close() alone
                self._drop(conn)

        extra = {k: v for k, v in reply.getheaders() if k.lower() not in _NOT_RELAYED}
        return ProxyResponse(status=reply.status, body=b"", content_type=reply.getheader("Content-Type"),
                             headers=extra, stream=StreamBody(chunks(), release))

    def _unreachable(self, request: ProxyRequest, exc: Exception) -> UpstreamUnreachable:
        return UpstreamUnreachable(
            f"Upstream {self.base_url} is unreachable for {request.method} {request.path}: "
            f"{exc or type(exc).__name__}. Check that the model server is running and the --upstream URL is right."
        )

    def ensure_live(self) -> None:
        """Make sure the model server runs (a lazily deployed one is deployed now); `UpstreamError` if it cannot."""
        if self.gate is not None:
            self.gate.ensure_live()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
