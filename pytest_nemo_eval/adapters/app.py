"""The proxy's HTTP surface (flask): proxied OpenAI routes and the `/_nemo` control routes.

    /<path>                     -> route "default"          (e.g. /v1/completions)
    /b/<name>/<path>            -> route of benchmark <name> (e.g. /b/gsm8k/v1/chat/completions)
    POST /_nemo/benchmarks      {name, config} -> {name, url}   (register a benchmark route)
    GET  /_nemo/benchmarks      -> {benchmarks: [...]}
    GET  /_nemo/stats[/<name>]  -> ProxyStats JSON (no name: totals over all routes)
    GET  /_nemo/health          -> {status, upstream, benchmarks}
"""

from __future__ import annotations

import json
import logging

import flask

from .config import AdapterConfig
from .exchange import ProxyRequest, ProxyResponse, error_response
from .routes import DEFAULT_ROUTE, Route, RouteConflict, RouteTable

log = logging.getLogger(__name__)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def create_app(table: RouteTable, base_url: callable) -> flask.Flask:
    """`base_url()` gives the proxy's own URL (known only once the socket is bound)."""
    app = flask.Flask("pytest_nemo_eval.proxy")

    @app.post("/_nemo/benchmarks")
    def register_benchmark():
        data = flask.request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return _send(error_response(400, 'Send a JSON object {"name": str, "config": {...}}.', "invalid_request_error"))
        try:
            config = AdapterConfig.parse_user(data.get("config") or {}, source=f"adapter config of {data['name']!r}")
            route = table.add(data["name"], config)
        except RouteConflict as exc:
            return _send(error_response(409, str(exc), "conflict"))
        except ValueError as exc:
            return _send(error_response(400, str(exc), "invalid_request_error"))
        return {"name": route.name, "url": f"{base_url()}/b/{route.name}"}

    @app.get("/_nemo/benchmarks")
    def list_benchmarks():
        return {"benchmarks": table.names()}

    @app.get("/_nemo/stats", defaults={"name": None})
    @app.get("/_nemo/stats/<name>")
    def stats(name):
        try:
            return flask.Response(table.stats(name).model_dump_json(), content_type="application/json")
        except KeyError as exc:
            return _send(error_response(404, exc.args[0], "not_found"))

    @app.get("/_nemo/health")
    def health():
        return {"status": "ok", "upstream": table.upstream.base_url, "benchmarks": table.names()}

    @app.route("/b/<name>/<path:path>", methods=METHODS)
    def benchmark_route(name, path):
        route = table.get(name)
        if route is None:
            return _send(error_response(
                404,
                f"Benchmark {name!r} is not registered on this proxy (registered: {', '.join(table.names())}). "
                "Register it first: POST /_nemo/benchmarks {\"name\": ..., \"config\": {...}}.",
                "not_found",
            ))
        return _proxy(route, "/" + path)

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def default_route(path):
        return _proxy(table.get(DEFAULT_ROUTE), "/" + path)

    return app


def _proxy(route: Route, path: str) -> flask.Response:
    """Read and check the client's request, run the route's chain, send the result."""
    req = flask.request
    limit = route.config.max_body_bytes
    if (req.content_length or 0) > limit:
        return _reject(route, _too_large(req.content_length, limit))
    body = req.stream.read(limit + 1)
    if len(body) > limit:
        return _reject(route, _too_large(len(body), limit))
    parsed = None
    if req.method == "POST":
        parsed, problem = _parse_json(body)
        if problem:
            return _reject(route, error_response(400, problem, "invalid_request_error"))
    request = ProxyRequest(
        method=req.method,
        path=path,
        query=req.query_string.decode("latin-1"),
        headers=dict(req.headers),
        body=body,
        benchmark=route.name,
        json=parsed,
    )
    try:
        response = route.handler(request)
    except Exception as exc:  # a bug in an interceptor must not kill the worker thread silently
        log.exception("interceptor chain of %r failed", route.name)
        response = error_response(500, f"The proxy failed while handling {path}: {exc!r}.", "proxy_error")
    return _send(response)


def _reject(route: Route, response: ProxyResponse) -> flask.Response:
    """A request refused before the chain still counts: as a request and as an error."""
    route.stats.started()
    route.stats.finished(status=response.status, latency_ms=None, error=response.json()["error"]["message"][:500],
                         cache_hit=False)
    return _send(response)


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


def _send(response: ProxyResponse) -> flask.Response:
    return flask.Response(response.body, status=response.status, headers=response.headers,
                          content_type=response.content_type)
