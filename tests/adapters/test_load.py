"""Load: 64 concurrent clients, 2,560 requests, through the proxy (its own process, with
cache, logging and retries on) to a real upstream process — all on loopback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from pytest_nemo_eval.adapters import AdapterConfig, CacheConfig, LoggingConfig
from pytest_nemo_eval.adapters.client import fetch_stats, register_benchmark
from pytest_nemo_eval.adapters.process import ProxyProcess

CLIENTS, PER_CLIENT = 64, 40


def _start_upstream_process() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("scripted_upstream.py")), "--threads", "16"],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = process.stdout.readline()
    assert "listening on" in line, line
    return process, line.rsplit(" ", 1)[1].strip()


def test_64_concurrent_clients_zero_errors_every_reply_matched_stats_exact(tmp_path):
    upstream, upstream_url = _start_upstream_process()
    config = AdapterConfig(cache=CacheConfig(), request_logging=LoggingConfig(max_entries=100),
                           response_logging=LoggingConfig(max_entries=100))
    try:
        with ProxyProcess(upstream_url, cache_path=tmp_path / "load.sqlite", log_dir=tmp_path / "logs") as proxy:
            base = register_benchmark(proxy.url, "load", config)
            mismatches: list[str] = []
            lock = threading.Lock()

            def client(client_id: int) -> int:
                done = 0
                with requests.Session() as session:
                    for i in range(PER_CLIENT):
                        # every 4th prompt is shared by all clients, so the cache is exercised under load
                        prompt = f"shared {i}" if i % 4 == 0 else f"client {client_id} request {i}"
                        reply = session.post(f"{base}/v1/completions", json={"prompt": prompt, "max_tokens": 4}, timeout=60)
                        body = reply.json() if reply.status_code == 200 else None
                        if body is None or body["choices"][0]["text"] != f"echo:{prompt}" or body["received"]["prompt"] != prompt:
                            with lock:
                                mismatches.append(f"{prompt!r}: {reply.status_code} {reply.text[:200]}")
                        done += 1
                return done

            with ThreadPoolExecutor(CLIENTS) as pool:
                completed = sum(pool.map(client, range(CLIENTS)))
            stats = fetch_stats(proxy.url, "load")
        upstream_calls = requests.get(f"{upstream_url}/_script", timeout=10).json()["calls"]
    finally:
        upstream.terminate()
        upstream.wait(10)

    total = CLIENTS * PER_CLIENT
    assert completed == total
    assert mismatches == []
    assert (stats.requests, stats.errors, stats.in_flight, stats.retries, stats.cache_errors) == (total, 0, 0, 0, 0)
    assert stats.status_counts == {"200": total}
    assert stats.cache_hits + stats.upstream_calls == total
    assert stats.upstream_calls == upstream_calls
    shared_requests, shared_prompts = total // 4, PER_CLIENT // 4
    assert 0 < stats.cache_hits <= shared_requests - shared_prompts  # each shared prompt asked upstream at least once
    expected_prompt_tokens = sum(len((f"shared {i}" if i % 4 == 0 else f"client {c} request {i}").split())
                                 for c in range(CLIENTS) for i in range(PER_CLIENT))
    assert stats.prompt_tokens == expected_prompt_tokens
    logged = (tmp_path / "logs" / "load" / "requests.jsonl").read_text().splitlines()
    assert len(logged) == 100 and all(json.loads(line)["benchmark"] == "load" for line in logged)
