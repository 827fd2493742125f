"""The proxy's WSGI application: proxied OpenAI routes on a lean path, control routes in flask.

    /<path>            -> route "default"           (e.g. /v1/completions)
    /b/<name>/<path>   -> route of benchmark <name>  (e.g. /b/gsm8k/v1/chat/completions)
    /_nemo/...         -> the flask control app (control.py)

Why the proxied path does not go through flask's routing and request objects:
measured here, a flask request costs ~255 µs of CPU before any interceptor
runs — a quarter of the 1 ms budget for the whole hop. Reading the WSGI environ
directly costs a tenth of that; flask stays where its conveniences matter.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Callable, Iterable

from .control import create_control_app
from .exchange import ProxyRequest, ProxyResponse, error_response
from .routes import DEFAULT_ROUTE, Route, RouteTable

log = logging.getLogger(__name__)
CONTROL_PREFIX = "/_nemo/"
BENCHMARK_PREFIX = "/b/"


class ProxyApp:
    def __init__(self, table: RouteTable, base_url: Callable[[], str]) -> None:
        self.table = table
        self.control = create_control_app(table, base_url)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path.startswith(CONTROL_PREFIX):
            return self.control(environ, start_response)
        route, path = self._route_of(path)
        if route is None:
            response = error_response(
                404,
                f"Benchmark {path!r} is not registered on this proxy (registered: {', '.join(self.table.names())}). "
                'Register it first: POST /_nemo/benchmarks {"name": ..., "config": {...}}.',
                "not_found",
            )
        else:
            response = self._proxy(route, path, environ)
        return _send(response, start_response)

    def _route_of(self, path: str) -> tuple[Route | None, str]:
        """(route, OpenAI path) — or (None, benchmark name) for an unknown benchmark."""
        if path.startswith(BENCHMARK_PREFIX):
            name, _, rest = path[len(BENCHMARK_PREFIX):].partition("/")
            route = self.table.get(name)
            return (route, "/" + rest) if route is not None else (None, name)
        return self.table.get(DEFAULT_ROUTE), path

    def _proxy(self, route: Route, path: str, environ: dict) -> ProxyResponse:
        """Read and check the client's request, then run the route's chain."""
        limit = route.config.max_body_bytes
        declared = int(environ.get("CONTENT_LENGTH") or 0)
        if declared > limit:
            return _reject(route, _too_large(declared, limit))
        body = environ["wsgi.input"].read(declared) if declared else b""
        method = environ["REQUEST_METHOD"]
        parsed = None
        if method == "POST":
            parsed, problem = _parse_json(body)
            if problem:
                return _reject(route, error_response(400, problem, "invalid_request_error"))
        request = ProxyRequest(
            method=method,
            path=path,
            query=environ.get("QUERY_STRING", ""),
            headers=_headers(environ),
            body=body,
            benchmark=route.name,
            json=parsed,
        )
        try:
            return route.handler(request)
        except Exception as exc:  # a bug in an interceptor must not kill the worker thread silently
            log.exception("interceptor chain of %r failed", route.name)
            return error_response(500, f"The proxy failed while handling {path}: {exc!r}.", "proxy_error")


def _headers(environ: dict) -> dict[str, str]:
    """Client headers from the WSGI environ (HTTP_X_API_KEY -> X-Api-Key)."""
    headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    return headers


def _reject(route: Route, response: ProxyResponse) -> ProxyResponse:
    """A request refused before the chain still counts: as a request and as an error."""
    route.stats.started()
    route.stats.finished(status=response.status, latency_ms=None, error=response.json()["error"]["message"][:500],
                         cache_hit=False)
    return response


def _parse_json(body: bytes) -> tuple[dict | None, str | None]:
    if not body:
        return None, "The request body is empty. POST a JSON object (the OpenAI request) with Content-Type: application/json."
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, (f"The request body is not valid JSON ({exc}). POST a JSON object as the OpenAI API expects, "
                      "e.g. {\"model\": ..., \"prompt\": ...}.")
    if not isinstance(value, dict):
        return None, f"The request body must be a JSON object, not {type(value).__name__}."
    return value, None


def _too_large(size: int, limit: int) -> ProxyResponse:
    return error_response(
        413,
        f"The request body ({size} bytes) exceeds this route's limit of {limit} bytes. "
        "Send smaller requests, or raise max_body_bytes in the adapter config.",
        "request_too_large",
    )


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _send(response: ProxyResponse, start_response: Callable) -> Iterable[bytes]:
    if response.stream is not None:  # relayed as it arrives (chunked); its close() runs the finishers
        start_response(_status_line(response.status), [*response.headers.items(),
                                                        ("Content-Type", response.content_type)])
        return response.stream
    headers = [*response.headers.items(), ("Content-Type", response.content_type),
               ("Content-Length", str(len(response.body)))]
    start_response(_status_line(response.status), headers)
    return [response.body]
