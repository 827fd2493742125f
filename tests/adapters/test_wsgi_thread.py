"""ServerThread.stop() ends the server even when waitress already closed its trigger pipe
(seen once in CI as EBADF from stop(), which then left the server running)."""

from __future__ import annotations

import requests

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread
from pytest_nemo_eval.serving.ports import port_in_use


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def _freed(server: ServerThread) -> bool:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return not port_in_use(host, int(port))


def test_stop_without_a_trigger_still_closes_the_port_and_ends_the_thread():
    server = ServerThread(_hello, host="127.0.0.1", port=0, threads=2, name="test-wsgi").start()
    assert requests.get(server.url, timeout=10).text == "hello"
    server._server.trigger.close()  # what waitress does itself when poll reports the pipe hung up
    server.stop(grace_s=3.0)
    assert not server.is_alive()
    assert _freed(server)


def test_normal_stop_is_idempotent_and_frees_the_port():
    server = ServerThread(_hello, host="127.0.0.1", port=0, threads=2, name="test-wsgi").start()
    assert requests.get(server.url, timeout=10).status_code == 200
    server.stop()
    server.stop()
    assert not server.is_alive() and _freed(server)


def test_stop_before_start_frees_the_bound_port():
    """A serving stack that fails to start stops its HTTP front, which bound but never served."""
    server = ServerThread(_hello, host="127.0.0.1", port=0, threads=2, name="test-wsgi")
    server.stop()
    assert not server.is_alive() and _freed(server)
