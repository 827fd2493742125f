"""The proxy's control routes (flask): register benchmarks, read stats, health.

    POST /_nemo/benchmarks      {name, config} -> {name, url}   (register a benchmark route)
    GET  /_nemo/benchmarks      -> {benchmarks: [...]}
    GET  /_nemo/stats[/<name>]  -> ProxyStats JSON (no name: totals over all routes)
    GET  /_nemo/health          -> {status, upstream, benchmarks}
    POST /_nemo/upstream/live   -> {status: live} once the model server runs (a lazy deployment deploys now)
"""

from __future__ import annotations

from typing import Callable

import flask

from .config import AdapterConfig
from .exchange import ProxyResponse, error_response
from .routes import DEFAULT_ROUTE, RouteConflict, RouteTable
from .upstream import UpstreamError


def create_control_app(table: RouteTable, base_url: Callable[[], str]) -> flask.Flask:
    """`base_url()` gives the proxy's own URL (known only once the socket is bound)."""
    app = flask.Flask("pytest_nemo_eval.proxy")

    @app.post("/_nemo/benchmarks")
    def register_benchmark():
        data = flask.request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return _send(error_response(400, 'Send a JSON object {"name": str, "config": {...}}.', "invalid_request_error"))
        try:
            if data.get("config") is None:  # like ProxyServer.register_benchmark: the proxy's own config
                config = table.get(DEFAULT_ROUTE).config
            else:
                config = AdapterConfig.parse_user(data["config"], source=f"adapter config of {data['name']!r}")
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

    @app.post("/_nemo/upstream/live")
    def upstream_live():
        try:
            table.upstream.ensure_live()
        except UpstreamError as exc:
            return _send(error_response(exc.status, str(exc), exc.error_type))
        return {"status": "live", "upstream": table.upstream.base_url}

    return app


def _send(response: ProxyResponse) -> flask.Response:
    return flask.Response(response.body, status=response.status, content_type=response.content_type)
