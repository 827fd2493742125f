"""Faults and bad input, each against real servers: the proxy answers with a clear,
OpenAI-shaped error (or recovers), never hangs, and its stats record what happened."""

from __future__ import annotations

import socket
import time

import pytest

from pytest_nemo_eval.adapters import AdapterConfig, CacheConfig, RetryConfig
from .scripted_upstream import ScriptedUpstream

from .openai_calls import completion

FAST_RETRIES = AdapterConfig(retry=RetryConfig(max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, timeout_s=5))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_upstream_down_at_start_then_comes_up(start_proxy, http):
    port = _free_port()
    proxy = start_proxy(f"http://127.0.0.1:{port}", FAST_RETRIES)
    reply = completion(http, proxy.url)
    assert reply.status_code == 502
    message = reply.json()["error"]["message"]
    assert f"127.0.0.1:{port} is unreachable" in message and "after 4 attempts" in message
    assert "Check that the model server is running" in message
    with ScriptedUpstream(port=port):
        assert completion(http, proxy.url).status_code == 200
    stats = proxy.stats()
    assert (stats.requests, stats.errors, stats.retries, stats.upstream_calls) == (2, 1, 3, 5)


def test_upstream_dies_mid_run_and_returns(upstream, start_proxy, http):
    port = int(upstream.url.rsplit(":", 1)[1])
    proxy = start_proxy(upstream.url, FAST_RETRIES)
    assert completion(http, proxy.url, "before").status_code == 200
    upstream.stop()
    reply = completion(http, proxy.url, "during")
    assert reply.status_code == 502 and "unreachable" in reply.json()["error"]["message"]
    with ScriptedUpstream(port=port):
        assert completion(http, proxy.url, "after").json()["choices"][0]["text"] == "echo:after"
    assert proxy.stats().errors == 1 and proxy.stats().requests == 3


def test_500s_then_recovery_is_retried_and_recorded_as_success(upstream, start_proxy, http):
    upstream.script.fail_next = 3
    proxy = start_proxy(upstream.url, FAST_RETRIES)
    reply = completion(http, proxy.url, "retry me")
    assert reply.status_code == 200 and reply.json()["choices"][0]["text"] == "echo:retry me"
    stats = proxy.stats()
    assert (stats.requests, stats.errors, stats.retries, stats.upstream_calls) == (1, 0, 3, 4)
    assert upstream.script.calls == 4


def test_429_is_retried_and_persistent_500_is_passed_on_after_the_last_attempt(upstream, start_proxy, http):
    upstream.script.update({"fail_next": 1, "fail_status": 429})
    proxy = start_proxy(upstream.url, FAST_RETRIES)
    assert completion(http, proxy.url).status_code == 200
    upstream.script.update({"fail_next": 100, "fail_status": 503})
    reply = completion(http, proxy.url)
    assert reply.status_code == 503 and reply.json()["error"]["message"] == "scripted failure 503"
    stats = proxy.stats()
    assert stats.errors == 1 and stats.retries == 1 + 3 and "503" in stats.last_error


def test_hanging_upstream_times_out_with_a_clear_error(upstream, start_proxy, http):
    upstream.script.hang_s = 1.2
    proxy = start_proxy(upstream.url, AdapterConfig(retry=RetryConfig(timeout_s=0.5)))
    started = time.monotonic()
    reply = completion(http, proxy.url)
    assert time.monotonic() - started < 1.1
    assert reply.status_code == 504
    assert "did not answer POST /v1/completions within 0.5 s" in reply.json()["error"]["message"]
    assert reply.json()["error"]["type"] == "upstream_timeout"
    upstream.script.hang_s = 0


def test_non_json_upstream_reply_is_a_clear_502_and_not_retried(upstream, start_proxy, http):
    upstream.script.non_json = True
    proxy = start_proxy(upstream.url, AdapterConfig(retry=FAST_RETRIES.retry, cache=CacheConfig()))
    reply = completion(http, proxy.url)
    assert reply.status_code == 502
    assert "non-JSON body (text/html" in reply.json()["error"]["message"]
    assert upstream.script.calls == 1 and proxy.stats().retries == 0
    upstream.script.non_json = False
    assert completion(http, proxy.url).status_code == 200  # the bad reply was not cached


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"prompt": "unterminated', "not valid JSON"),
        (b'["a", "list"]', "must be a JSON object, not list"),
        (b"", "request body is empty"),
        (b"\xff\xfe\x00", "not valid JSON"),
    ],
)
def test_malformed_client_json_gets_400_with_a_clear_message(upstream, start_proxy, http, body, expected):
    proxy = start_proxy(upstream.url)
    reply = http.post(f"{proxy.url}/v1/completions", data=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert expected in reply.json()["error"]["message"]
    assert upstream.script.calls == 0
    assert proxy.stats().errors == 1


def test_huge_request_body_is_refused_and_the_proxy_keeps_serving(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url)
    huge = b'{"prompt": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    reply = http.post(f"{proxy.url}/v1/completions", data=huge, headers={"Content-Type": "application/json"})
    assert reply.status_code == 413
    assert "exceeds this route's limit of 33554432 bytes" in reply.json()["error"]["message"]
    small_limit = proxy.register_benchmark("tiny", AdapterConfig(max_body_bytes=1000))
    assert completion(http, small_limit, "y" * 2000).status_code == 413
    assert completion(http, small_limit, "y" * 100).status_code == 200
    just_under = completion(http, proxy.url, "z" * (8 * 1024 * 1024))
    assert just_under.status_code == 200 and len(just_under.json()["received"]["prompt"]) == 8 * 1024 * 1024
    assert upstream.script.calls == 2


def test_a_taken_port_is_a_clear_error(upstream, start_proxy):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}.*Pick another --port"):
            start_proxy(upstream.url, port=port)
