"""The proxy in front of the real demo deployment (megatron-core GPT served by PyTriton)."""

from __future__ import annotations

from pytest_nemo_eval.adapters import AdapterConfig


def test_proxy_caches_and_counts_the_real_model(demo_deployment, start_proxy, http):
    proxy = start_proxy(demo_deployment.url, AdapterConfig(cache="reuse"))
    url = proxy.register_benchmark("demo-addition", AdapterConfig(cache="reuse"))
    body = {"model": demo_deployment.model_id, "prompt": "12+34=", "max_tokens": 4, "temperature": 0}

    first = http.post(f"{url}/v1/completions", json=body, timeout=120)
    second = http.post(f"{url}/v1/completions", json=body, timeout=120)
    direct = http.post(f"{demo_deployment.url}/v1/completions", json=body, timeout=120)

    assert first.status_code == 200, first.text
    assert second.content == first.content  # served from the cache, byte for byte
    assert first.json()["choices"][0]["text"] == direct.json()["choices"][0]["text"]  # greedy: same answer as direct
    usage = first.json()["usage"]
    stats = proxy.stats("demo-addition")
    assert (stats.requests, stats.cache_hits, stats.upstream_calls, stats.errors) == (2, 1, 1, 0)
    assert stats.prompt_tokens == 2 * usage["prompt_tokens"] > 0
    assert stats.completion_tokens == 2 * usage["completion_tokens"] > 0


def test_loglikelihood_requests_pass_through_unchanged(demo_deployment, start_proxy, http):
    """echo + logprobs with max_tokens=0 is how multiple-choice harnesses score: the proxy must not alter it."""
    proxy = start_proxy(demo_deployment.url, AdapterConfig(system_message="ignored for completions", reasoning={}))
    body = {"model": demo_deployment.model_id, "prompt": "1+1=2;", "max_tokens": 0, "echo": True, "logprobs": 1}
    via_proxy = http.post(f"{proxy.url}/v1/completions", json=body, timeout=120).json()
    direct = http.post(f"{demo_deployment.url}/v1/completions", json=body, timeout=120).json()
    assert via_proxy["choices"][0]["text"] == direct["choices"][0]["text"]
    assert via_proxy["choices"][0]["logprobs"] == direct["choices"][0]["logprobs"]
