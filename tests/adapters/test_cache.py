"""The SQLite response cache: modes, canonical keys, corruption, locks, crash-resume,
and concurrent writers from several real processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

from pytest_nemo_eval.adapters import AdapterConfig, CacheConfig
from pytest_nemo_eval.adapters.client import fetch_stats
from pytest_nemo_eval.adapters.interceptors.cache import CachedResponse, CacheError, ResponseCache, cache_key
from pytest_nemo_eval.adapters.process import ProxyProcess

from .openai_calls import completion

REUSE = AdapterConfig(cache=CacheConfig(mode="reuse"))


def test_identical_requests_hit_the_cache_whatever_their_key_order(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url, REUSE)
    first = http.post(f"{proxy.url}/v1/completions", data=b'{"prompt": "a", "max_tokens": 2}',
                      headers={"Content-Type": "application/json"})
    again = http.post(f"{proxy.url}/v1/completions", data=b'{"max_tokens":2,"prompt":"a"}',
                      headers={"Content-Type": "application/json"})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content  # same bytes, including the upstream's call id
    other = completion(http, proxy.url, "b")
    assert other.json()["id"] != first.json()["id"]
    stats = proxy.stats()
    assert (stats.requests, stats.cache_hits, stats.upstream_calls) == (3, 1, 2)
    assert upstream.script.calls == 2


def test_refresh_asks_upstream_and_overwrites_and_off_bypasses(upstream, start_proxy, http):
    proxy = start_proxy(upstream.url, REUSE)
    cached_id = completion(http, proxy.url, "q").json()["id"]
    refresh = proxy.register_benchmark("refresh", AdapterConfig(cache="refresh"))
    fresh_id = completion(http, refresh, "q").json()["id"]
    assert fresh_id != cached_id
    assert completion(http, proxy.url, "q").json()["id"] == fresh_id  # reuse now serves the refreshed entry
    off = proxy.register_benchmark("off", AdapterConfig(cache="off"))
    assert completion(http, off, "q").json()["id"] not in (cached_id, fresh_id)
    assert proxy.stats("off").cache_hits == 0 and proxy.stats("refresh").cache_hits == 0


def test_corrupted_cache_file_is_a_clear_error_at_start(upstream, start_proxy, tmp_path):
    bad = tmp_path / "corrupt.sqlite"
    bad.write_bytes(b"this is not a database, just some bytes that ended up here" * 100)
    with pytest.raises(CacheError, match=r"corrupt\.sqlite cannot be used: file is not a database.*delete it"):
        start_proxy(upstream.url, REUSE, cache_path=bad)
    assert bad.read_bytes().startswith(b"this is not a database")  # we never overwrite a user's file


def test_a_corrupted_entry_is_dropped_and_replaced_by_a_fresh_answer(upstream, start_proxy, http, tmp_path):
    proxy = start_proxy(upstream.url, REUSE)
    original = completion(http, proxy.url, "c").json()["id"]
    conn = sqlite3.connect(tmp_path / "cache.sqlite")
    conn.execute("UPDATE responses SET body = CAST('{\"torn\": ' AS BLOB)")
    conn.commit()
    conn.close()
    fresh = completion(http, proxy.url, "c").json()
    assert fresh["choices"][0]["text"] == "echo:c" and fresh["id"] != original
    assert completion(http, proxy.url, "c").json()["id"] == fresh["id"]  # the fresh answer is cached now
    stats = proxy.stats()
    assert (stats.cache_errors, stats.cache_hits, stats.errors) == (1, 1, 0)


def test_locked_cache_never_loses_a_result_and_recovers(upstream, start_proxy, http, tmp_path):
    """Another process holds the write lock: requests are still answered from upstream,
    `cache_errors` counts the entries not stored, and storing resumes once the lock is gone."""
    path = tmp_path / "locked.sqlite"
    ResponseCache(path).close()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        sys.stdin.readline()
        conn.execute("ROLLBACK")
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proxy = start_proxy(upstream.url, AdapterConfig(cache=CacheConfig(busy_timeout_s=0.2)), cache_path=path)
        replies = [completion(http, proxy.url, f"p{i}") for i in range(3)]
        assert [r.status_code for r in replies] == [200, 200, 200]
        assert [r.json()["choices"][0]["text"] for r in replies] == ["echo:p0", "echo:p1", "echo:p2"]
        assert proxy.stats().cache_errors == 3
    finally:
        holder.communicate("\n", timeout=10)
    assert completion(http, proxy.url, "p0").json()["id"] == "cmpl-4"  # not cached while locked: asked again
    assert completion(http, proxy.url, "p0").json()["id"] == "cmpl-4"  # stored now: a hit
    assert proxy.stats().cache_hits == 1


def test_crash_mid_run_then_resume_from_cache(upstream, tmp_path):
    """SIGKILL the proxy process after some requests; a new proxy on the same cache file
    answers all of them from the cache without asking the upstream again."""
    cache = tmp_path / "resume.sqlite"
    prompts = [f"question {i}" for i in range(20)]
    import requests

    with ProxyProcess(upstream.url, REUSE, cache_path=cache) as first:
        answers = [completion(requests, first.url, p).json() for p in prompts]
        first.kill()
    assert upstream.script.calls == 20
    with ProxyProcess(upstream.url, REUSE, cache_path=cache) as second:
        resumed = [completion(requests, second.url, p).json() for p in prompts + ["question 20"]]
        stats = fetch_stats(second.url)
    assert resumed[:20] == answers
    assert upstream.script.calls == 21
    assert (stats.requests, stats.cache_hits, stats.errors) == (21, 20, 0)


def _write_entries(path: str, worker: int, keys: int) -> int:
    """Child process: store and read back `keys` entries, half shared with the other workers."""
    cache = ResponseCache(path, busy_timeout_s=30)
    for i in range(keys):
        key = f"shared-{i}" if i % 2 == 0 else f"own-{worker}-{i}"
        body = (key * 50).encode()
        cache.put(key, CachedResponse(200, "application/json", body), replace=i % 4 == 0)
        hit = cache.get(key)
        assert hit is not None and hit.body == body, key
    cache.close()
    return keys


def test_concurrent_writers_from_several_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ResponseCache(path).close()
    workers, keys = 3, 300
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        assert pool.starmap(_write_entries, [(path, w, keys) for w in range(workers)]) == [keys] * workers
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT key, body FROM responses").fetchall()
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    expected = {f"shared-{i}" for i in range(0, keys, 2)} | {f"own-{w}-{i}" for w in range(workers) for i in range(1, keys, 2)}
    assert sorted(key for key, _ in rows) == sorted(expected)  # no duplicates, none missing
    assert all(bytes(body) == (key * 50).encode() for key, body in rows)  # none torn


def test_two_proxy_processes_share_one_cache(upstream, tmp_path):
    import requests

    cache = tmp_path / "two.sqlite"
    prompts = [f"shared prompt {i % 40}" for i in range(160)]
    with ProxyProcess(upstream.url, REUSE, cache_path=cache) as a, ProxyProcess(upstream.url, REUSE, cache_path=cache) as b:
        urls = [a.url, b.url]
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda ip: completion(requests, urls[ip[0] % 2], ip[1]), enumerate(prompts)))
        stats = [fetch_stats(url) for url in urls]
    assert all(r.status_code == 200 for r in replies)
    assert all(r.json()["choices"][0]["text"] == f"echo:{p}" for r, p in zip(replies, prompts))
    assert sum(s.errors + s.cache_errors for s in stats) == 0
    assert sum(s.requests for s in stats) == 160
    assert sum(s.cache_hits + s.upstream_calls for s in stats) == 160
    assert ResponseCache(cache).count() == 40


def test_cache_key_is_canonical_and_namespaced():
    assert cache_key("m", "POST", "/v1/completions", {"a": 1, "b": [1, 2]}) == cache_key("m", "POST", "/v1/completions", {"b": [1, 2], "a": 1})
    assert cache_key("m", "POST", "/v1/completions", {"a": 1}) != cache_key("other-model", "POST", "/v1/completions", {"a": 1})
    assert cache_key("m", "POST", "/v1/completions", {"a": 1}) != cache_key("m", "POST", "/v1/chat/completions", {"a": 1})
