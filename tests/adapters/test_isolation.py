"""Per-benchmark isolation: one proxy, several benchmarks, separate configs and stats,
registered from Python and over HTTP (as pytest-xdist workers do)."""

from __future__ import annotations

import multiprocessing

import pytest
import requests

from pytest_nemo_eval.adapters import AdapterConfig, ProxyStats
from pytest_nemo_eval.adapters.client import ProxyClientError, fetch_stats, is_healthy, register_benchmark

from .openai_calls import chat, completion


def test_benchmarks_get_their_own_config_and_stats(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url)
    terse = proxy.register_benchmark("terse", AdapterConfig(system_message="Be terse."))
    plain = proxy.register_benchmark("plain")
    assert terse == f"{proxy.url}/b/terse"
    messages = [{"role": "user", "content": "q"}]
    assert chat(http, terse, messages).json()["received"]["messages"][0] == {"role": "system", "content": "Be terse."}
    assert chat(http, plain, messages).json()["received"]["messages"] == messages
    for _ in range(2):
        completion(http, plain)
    assert proxy.stats("terse").requests == 1
    assert proxy.stats("plain").requests == 3
    assert proxy.stats("default").requests == 0
    assert proxy.stats().requests == 4  # totals over all routes


def test_http_registration_and_stats_for_workers(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url)
    assert is_healthy(proxy.url)
    url = register_benchmark(proxy.url, "gsm8k.cot", AdapterConfig(payload_modifier={"override": {"temperature": 0}}))
    assert url == f"{proxy.url}/b/gsm8k.cot"
    assert completion(http, url, temperature=1.0).json()["received"]["temperature"] == 0
    stats = fetch_stats(proxy.url, "gsm8k.cot")
    assert isinstance(stats, ProxyStats) and stats.requests == 1 and stats.completion_tokens > 0
    assert fetch_stats(proxy.url).requests == 1
    assert "gsm8k.cot" in http.get(f"{proxy.url}/_nemo/benchmarks").json()["benchmarks"]


def test_a_benchmark_without_a_config_gets_the_proxy_default(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url, AdapterConfig(payload_modifier={"override": {"seed": 42}}))
    for url in (proxy.register_benchmark("python-default"), register_benchmark(proxy.url, "http-default")):
        assert completion(http, url).json()["received"]["seed"] == 42


def test_registration_is_idempotent_for_same_config_and_refused_for_another(upstream, start_proxy):
    proxy = start_proxy(upstream.url)
    config = AdapterConfig(system_message="A")
    assert register_benchmark(proxy.url, "mmlu", config) == register_benchmark(proxy.url, "mmlu", config)
    with pytest.raises(ProxyClientError, match="409.*already registered.*different adapter config"):
        register_benchmark(proxy.url, "mmlu", AdapterConfig(system_message="B"))


def test_bad_names_unknown_benchmarks_and_bad_configs_are_clear_errors(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url)
    with pytest.raises(ProxyClientError, match="400.*cannot be a URL path segment"):
        register_benchmark(proxy.url, "mmlu/abstract algebra")
    reply = http.post(f"{proxy.url}/_nemo/benchmarks", json={"name": "x", "config": {"cache": {"mode": "maybe"}}})
    assert reply.status_code == 400 and "cache.mode" in reply.json()["error"]["message"]
    reply = completion(http, f"{proxy.url}/b/never-registered")
    assert reply.status_code == 404 and "not registered" in reply.json()["error"]["message"]
    with pytest.raises(ProxyClientError, match="404.*No benchmark 'ghost'"):
        fetch_stats(proxy.url, "ghost")
    with pytest.raises(ProxyClientError, match="Cannot reach the nemo-eval proxy"):
        fetch_stats("http://127.0.0.1:9")


def _worker(proxy_url: str, worker: int, requests_per_worker: int) -> list[str]:
    """Runs in its own process, like an xdist worker: register a route, use it, report mismatches."""
    base = register_benchmark(proxy_url, f"worker-{worker}", AdapterConfig(system_message=f"You are worker {worker}."))
    problems = []
    with requests.Session() as session:
        for i in range(requests_per_worker):
            reply = chat(session, base, [{"role": "user", "content": f"w{worker} q{i}"}]).json()
            system = reply["received"]["messages"][0]["content"]
            if system != f"You are worker {worker}." or reply["choices"][0]["message"]["content"] != f"echo:w{worker} q{i}":
                problems.append(f"worker {worker} request {i}: {reply}")
    return problems


def test_workers_in_separate_processes_share_one_proxy_without_crosstalk(upstream, start_proxy):
    proxy = start_proxy(upstream.url)
    workers, per_worker = 4, 50
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        problems = pool.starmap(_worker, [(proxy.url, w, per_worker) for w in range(workers)])
    assert problems == [[]] * workers
    for w in range(workers):
        stats = fetch_stats(proxy.url, f"worker-{w}")
        assert (stats.requests, stats.errors) == (per_worker, 0)
        assert stats.prompt_tokens == 2 * per_worker  # "w<k> q<i>" is two words, counted once per request
    assert fetch_stats(proxy.url).requests == workers * per_worker
