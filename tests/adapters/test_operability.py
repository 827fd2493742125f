"""Operability of long runs: raise_client_errors, progress_tracking (webhook on a local flask server),
log_tokens; each through a real proxy in front of the scripted upstream."""

from __future__ import annotations

import json
import logging
import threading

import pytest
from flask import Flask, request as flask_request
from pydantic import ValidationError

from pytest_nemo_eval.adapters import AdapterConfig
from pytest_nemo_eval.adapters.interceptors.progress_tracking import describe, read_progress
from pytest_nemo_eval.adapters.interceptors.raise_client_errors import RaiseClientErrorsConfig
from pytest_nemo_eval.adapters.wsgi_thread import ServerThread
from pytest_nemo_eval.harness.builtin.client import EndpointError, ModelClient

from .openai_calls import chat, completion

# --- raise_client_errors -------------------------------------------------------------------------------------


def test_a_client_error_trips_the_route_and_names_it(upstream, start_proxy, http, tmp_path):
    proxy = start_proxy(upstream.url)
    base = proxy.register_benchmark("mmlu", AdapterConfig(raise_client_errors={}))
    upstream.script.update({"fail_next": 1, "fail_status": 422})
    first = completion(http, base, "q1")
    assert first.status_code == 422  # the model's own status: harnesses do not retry a 4xx
    message = first.json()["error"]["message"]
    for part in ("raise_client_errors", "POST /v1/completions", "HTTP 422", "scripted failure 422", "'mmlu'"):
        assert part in message
    assert first.json()["error"]["type"] == "upstream_client_error"

    calls_before = upstream.script.state()["calls"]
    later = [completion(http, base, f"q{i}") for i in range(2, 5)]  # the model would answer these now
    assert [r.status_code for r in later] == [422, 422, 422]
    assert all(r.json()["error"]["message"] == message for r in later)
    assert upstream.script.state()["calls"] == calls_before  # refused without reaching the model

    stats = proxy.stats("mmlu")  # what the plugin turns into the benchmark's error (max_request_errors 0)
    assert (stats.requests, stats.errors) == (4, 4)
    assert "raise_client_errors" in stats.last_error and "HTTP 422" in stats.last_error
    marker = json.loads((tmp_path / "logs" / "mmlu" / "client_error.json").read_text())
    assert marker["status"] == 422 and marker["path"] == "/v1/completions" and marker["message"] == message

    other = completion(http, proxy.register_benchmark("gsm8k"), "q")  # another benchmark's route is untouched
    assert other.status_code == 200


def test_the_harness_sees_the_refusal_named(upstream, start_proxy):
    """The builtin harness's client stops on it with the message (lm-eval & co. print the same body)."""
    proxy = start_proxy(upstream.url, AdapterConfig(raise_client_errors={}))
    upstream.script.update({"fail_next": 1, "fail_status": 400})
    client = ModelClient(f"{proxy.url}/v1/completions", "m", "completions")
    with pytest.raises(EndpointError, match=r"HTTP 400.*raise_client_errors: the model answered POST /v1/completions"):
        client.generate("2+2=", max_tokens=4, temperature=0.0, stop=None)


@pytest.mark.parametrize("status", [408, 429])
def test_retryable_statuses_pass(upstream, start_proxy, http, status):
    proxy = start_proxy(upstream.url, AdapterConfig(raise_client_errors={}, retry={"max_retries": 0}))
    upstream.script.update({"fail_next": 1, "fail_status": status})
    assert completion(http, proxy.url, "a").status_code == status
    assert completion(http, proxy.url, "b").status_code == 200  # not tripped


def test_off_by_default_a_client_error_passes_and_the_next_request_reaches_the_model(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url)
    upstream.script.update({"fail_next": 1, "fail_status": 400})
    assert completion(http, proxy.url, "a").json() == {"error": {"message": "scripted failure 400"}}
    assert completion(http, proxy.url, "b").status_code == 200


def test_nemo_params_choose_the_statuses():
    default = RaiseClientErrorsConfig()
    assert [s for s in (399, 400, 404, 408, 429, 499, 500) if default.raises_on(s)] == [400, 404, 499]
    listed = RaiseClientErrorsConfig(status_codes=[429, 503], exclude_status_codes=[408])
    assert listed.raises_on(429) and listed.raises_on(503) and not listed.raises_on(408) and listed.raises_on(400)
    open_end = RaiseClientErrorsConfig(status_code_range_start=500, status_code_range_end=None)
    assert open_end.raises_on(599) and not open_end.raises_on(404)
    only_listed = RaiseClientErrorsConfig(status_codes=[404], status_code_range_start=None, status_code_range_end=None)
    assert only_listed.raises_on(404) and not only_listed.raises_on(400)
    with pytest.raises(ValidationError, match="in both status_codes and exclude_status_codes"):
        RaiseClientErrorsConfig(status_codes=[429])
    with pytest.raises(ValidationError, match="not a range"):
        RaiseClientErrorsConfig(status_code_range_start=499, status_code_range_end=400)
    with pytest.raises(ValidationError):
        AdapterConfig(raise_client_errors={"status_code": [400]})  # a typo is an error, not ignored


# --- progress_tracking ---------------------------------------------------------------------------------------


@pytest.fixture
def webhook():
    """A flask server on 127.0.0.1 that records every progress body it gets (and the method)."""
    app = Flask("progress-webhook")
    received: list[tuple[str, dict]] = []
    lock = threading.Lock()

    @app.route("/progress", methods=["POST", "PATCH", "PUT"])
    def progress():
        with lock:
            received.append((flask_request.method, flask_request.get_json()))
        return {"ok": True}

    server = ServerThread(app, host="127.0.0.1", port=0, threads=4, name="webhook").start()
    server.received = received
    yield server
    server.stop()


def test_progress_reaches_the_webhook_and_the_file(upstream, start_proxy, http, webhook, tmp_path):
    proxy = start_proxy(upstream.url)
    config = {"progress_tracking_url": f"{webhook.url}/progress", "progress_tracking_interval": 2}
    base = proxy.register_benchmark("gsm8k", AdapterConfig(progress_tracking=config, cache="reuse"))
    for i in range(5):
        assert completion(http, base, f"q{i}").status_code == 200
    assert completion(http, base, "q0").status_code == 200  # a cache hit: not progress
    upstream.script.update({"fail_next": 1, "fail_status": 400})
    assert completion(http, base, "refused").status_code == 400  # an error: not progress
    folder = tmp_path / "logs" / "gsm8k"
    live = read_progress(folder)  # what the terminal reads while the benchmark runs
    assert live["samples_processed"] == 4 and live["benchmark"] == "gsm8k" and live["rate_per_s"] > 0
    proxy.stop()  # the route closes: the last counts are written and sent

    final = read_progress(folder)
    assert (final["samples_processed"], final["cache_hits"]) == (5, 1)
    assert describe(final).startswith("5 samples processed (+1 cached), ") and "samples/s" in describe(final)
    methods = {method for method, _ in webhook.received}
    counts = [body["samples_processed"] for _, body in webhook.received]
    assert methods == {"PATCH"}  # NeMo's default method
    assert counts == sorted(counts) and counts[-1] == 5 and set(counts) <= {2, 4, 5}
    assert webhook.received[-1][1]["cache_hits"] == 1 and webhook.received[-1][1]["benchmark"] == "gsm8k"


def test_a_restarted_route_resumes_the_count_and_streams_count_when_whole(upstream, start_proxy, http, tmp_path):
    logs = tmp_path / "shared-logs"
    first = start_proxy(upstream.url, AdapterConfig(progress_tracking={}), log_dir=logs)
    completion(http, first.url, "a")
    completion(http, first.url, "b", stream=True)
    first.stop()
    assert read_progress(logs / "default")["samples_processed"] == 2
    second = start_proxy(upstream.url, AdapterConfig(progress_tracking={}), log_dir=logs)
    completion(http, second.url, "c")
    assert read_progress(logs / "default")["samples_processed"] == 3


def test_a_dead_webhook_never_fails_a_request(upstream, start_proxy, http, caplog, unused_port):
    url = f"http://127.0.0.1:{unused_port}/progress"
    proxy = start_proxy(upstream.url, AdapterConfig(progress_tracking={"progress_tracking_url": url,
                                                                       "webhook_timeout_s": 1}))
    with caplog.at_level(logging.WARNING, logger="pytest_nemo_eval.adapters.interceptors.progress_tracking"):
        assert all(completion(http, proxy.url, f"q{i}").status_code == 200 for i in range(3))
        proxy.stop()
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and url in warnings[0]


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- log_tokens ----------------------------------------------------------------------------------------------


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_request_usage_is_logged(upstream, start_proxy, http, tmp_path):
    proxy = start_proxy(upstream.url, AdapterConfig(log_tokens={}, cache="reuse"))
    sent = completion(http, proxy.url, "one two three").json()
    completion(http, proxy.url, "one two three")  # cache hit
    upstream.script.update({"fail_next": 1, "fail_status": 400})
    completion(http, proxy.url, "refused")
    upstream.script.update({"reasoning_reply": {"reasoning": "12+34", "content": "46"}})
    chat(http, proxy.url, [{"role": "user", "content": "12+34?"}], stream=True,
         stream_options={"include_usage": True}).content
    proxy.stop()

    lines = _lines(tmp_path / "logs" / "default" / "tokens.jsonl")
    assert len(lines) == 4
    fresh, hit, refused, streamed = lines
    assert {k: fresh[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == sent["usage"]
    assert (fresh["status"], fresh["from_cache"], fresh["id"], fresh["path"]) == (200, False, sent["id"],
                                                                                 "/v1/completions")
    assert hit["from_cache"] is True and hit["total_tokens"] == sent["usage"]["total_tokens"]
    assert refused["status"] == 400 and refused["total_tokens"] is None
    assert streamed["streamed"] is True and streamed["path"] == "/v1/chat/completions"
    assert streamed["reasoning_tokens"] == len("12+34") and streamed["completion_tokens"] > 0
    assert all(line["latency_ms"] >= 0 for line in lines)


def test_log_tokens_is_bounded_and_off_by_default(upstream, start_proxy, http, tmp_path):
    proxy = start_proxy(upstream.url, AdapterConfig(log_tokens={"max_entries": 2}))
    for i in range(4):
        completion(http, proxy.url, f"q{i}")
    plain = start_proxy(upstream.url, log_dir=tmp_path / "plain-logs")
    completion(http, plain.url, "q")
    proxy.stop()
    plain.stop()
    assert len(_lines(tmp_path / "logs" / "default" / "tokens.jsonl")) == 2
    assert not list((tmp_path / "plain-logs").rglob("tokens.jsonl"))
