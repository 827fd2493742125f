"""stream=true through the proxy, in front of the real demo deployment: relayed as it decodes, logged and
counted once whole, never cached, and a client that leaves cancels the request upstream."""

from __future__ import annotations

import json
import time

import openai

from pytest_nemo_eval.adapters import AdapterConfig

CONFIG = AdapterConfig(cache="reuse", response_logging={}, reasoning={})


def _engine(http, deployment) -> dict:
    return http.get(f"{deployment.url}/v1/health", timeout=30).json()["engine"]


def test_a_stream_through_the_proxy_equals_the_direct_answer_and_is_logged_whole(demo_deployment, start_proxy,
                                                                                tmp_path):
    proxy = start_proxy(demo_deployment.url, CONFIG)
    url = proxy.register_benchmark("streamed", CONFIG)
    options = {"model": demo_deployment.model_id, "prompt": "57+18=", "max_tokens": 8, "logprobs": 1}
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    direct = openai.OpenAI(base_url=f"{demo_deployment.url}/v1", api_key="unused").completions.create(**options)
    for _ in range(2):  # the second would be a cache hit if streams were cached
        chunks = list(sdk.completions.create(**options, stream=True, stream_options={"include_usage": True}))
        assert "".join(c.choices[0].text for c in chunks if c.choices) == direct.choices[0].text
        assert chunks[-1].usage == direct.usage
    log = tmp_path / "logs" / "streamed" / "responses.jsonl"

    def recorded() -> int:
        return len(log.read_text().splitlines()) if log.is_file() else 0

    # a stream is counted and logged when the server closes it, just after the client's [DONE], by two
    # finishers one after the other: wait for both
    deadline = time.monotonic() + 30
    while proxy.stats("streamed").requests < 2 or recorded() < 2:
        assert time.monotonic() < deadline, (proxy.stats("streamed"), recorded())
        time.sleep(0.01)
    stats = proxy.stats("streamed")
    assert (stats.requests, stats.cache_hits, stats.upstream_calls, stats.errors) == (2, 0, 2, 0)
    assert stats.completion_tokens == 2 * direct.usage.completion_tokens  # from the include_usage chunk
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(logged) == 2 and all(entry["streamed"] and entry["complete"] for entry in logged)
    body = logged[0]["body"]
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == direct.choices[0].text
    assert body["choices"][0]["logprobs"]["tokens"] == direct.choices[0].logprobs.tokens
    assert body["usage"] == direct.usage.model_dump(exclude_none=True)


def test_the_proxy_relays_tokens_while_the_model_still_decodes(demo_deployment, start_proxy, http):
    """The first chunk reaches the client while the engine is still decoding the same request:
    a proxy that buffered the stream could only send it after the last token."""
    proxy = start_proxy(demo_deployment.url)
    reply = http.post(f"{proxy.url}/v1/completions", stream=True, timeout=60, json={
        "prompt": "rev abc=", "max_tokens": 115, "ignore_eos": True, "stream": True})
    lines = reply.iter_lines()
    assert next(lines).startswith(b"data: {")
    still_decoding = _engine(http, demo_deployment)["active_rows"]
    rest = [line for line in lines if line]
    assert still_decoding >= 1
    assert rest[-1] == b"data: [DONE]"


def test_a_client_leaving_a_proxied_stream_cancels_it_upstream(demo_deployment, start_proxy, http):
    proxy = start_proxy(demo_deployment.url)
    before = _engine(http, demo_deployment)
    reply = http.post(f"{proxy.url}/v1/completions", stream=True, timeout=60, json={
        "prompt": "rev abc=", "max_tokens": 115, "ignore_eos": True, "stream": True})
    assert next(reply.iter_lines()).startswith(b"data: {")
    reply.close()
    deadline = time.monotonic() + 30
    while not (_engine(http, demo_deployment)["cancelled"] > before["cancelled"]):
        assert time.monotonic() < deadline, "the upstream request was not cancelled after the client left"
        time.sleep(0.02)
    assert _engine(http, demo_deployment)["active_rows"] == 0
