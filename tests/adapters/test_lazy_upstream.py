"""The proxy's upstream gate (runner/lazy_deployment.py): the model is "deployed" only when a request misses
the cache, once for any number of concurrent requests; cache hits never deploy; a failed deployment answers
every later request with its diagnosis without trying again. The deployment here is the scripted upstream
server started on demand (the real checkpoint's lazy deployment runs in tests/plugin/test_cache_and_resume.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from pytest_nemo_eval.adapters import AdapterConfig
from pytest_nemo_eval.runner.lazy_deployment import LazyDeployment

from .scripted_upstream import ScriptedUpstream

CONFIG = AdapterConfig.parse_user({"cache": {"mode": "reuse", "namespace": "m"}}, source="test")


def _gate(tmp_path, upstream: ScriptedUpstream, starts: list[float], fail: bool = False) -> LazyDeployment:
    lock = threading.Lock()

    def deploy() -> None:
        with lock:
            starts.append(time.monotonic())
        time.sleep(0.5)  # the model loading: requests keep arriving meanwhile
        if fail:
            raise RuntimeError("deploy exited with code 1 (CUDA out of memory)")
        if not getattr(upstream, "up", False):  # one server stands for the model across the test's runs
            upstream.__enter__()
            upstream.up = True  # type: ignore[attr-defined]

    return LazyDeployment(tmp_path, deploy, progress=lambda line: None)


def _ask(base: str, prompt: str) -> requests.Response:
    return requests.post(f"{base}/v1/completions", json={"model": "m", "prompt": prompt, "max_tokens": 4}, timeout=30)


def test_deploys_once_on_the_first_miss_and_never_for_hits(tmp_path, start_proxy):
    upstream = ScriptedUpstream()
    try:
        starts: list[float] = []
        proxy = start_proxy(upstream.url, CONFIG, upstream_gate=_gate(tmp_path, upstream, starts))
        assert starts == []  # nothing deployed before any request
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: _ask(proxy.url, f"p{i}"), range(8)))
        assert [r.status_code for r in replies] == [200] * 8 and len(starts) == 1
        assert upstream.script.calls == 8
        proxy.stop()

        again: list[float] = []  # the next run: same cache, a gate of its own
        proxy = start_proxy(upstream.url, CONFIG, upstream_gate=_gate(tmp_path, upstream, again))
        assert all(_ask(proxy.url, f"p{i}").status_code == 200 for i in range(8))
        assert again == [] and upstream.script.calls == 8 and proxy.stats().cache_hits == 8  # a fully cached re-run
        assert _ask(proxy.url, "new").status_code == 200
        assert len(again) == 1 and upstream.script.calls == 9  # the first miss deploys
        proxy.stop()

        live: list[float] = []  # something that needs the live model asks for it through the control route
        proxy = start_proxy(upstream.url, CONFIG, upstream_gate=_gate(tmp_path, upstream, live))
        assert requests.post(f"{proxy.url}/_nemo/upstream/live", timeout=30).json()["status"] == "live"
        assert len(live) == 1
    finally:
        upstream.stop()


def test_a_failed_deployment_answers_every_request_with_its_diagnosis_once(tmp_path, start_proxy):
    upstream = ScriptedUpstream()
    starts: list[float] = []
    proxy = start_proxy(upstream.url, CONFIG, upstream_gate=_gate(tmp_path, upstream, starts, fail=True))
    first, second = _ask(proxy.url, "a"), _ask(proxy.url, "b")
    for reply in (first, second):
        assert reply.status_code == 502, reply.text
        assert "CUDA out of memory" in reply.json()["error"]["message"]
    assert len(starts) == 1 and proxy.stats().retries == 0  # not retried per request, nor by the retry interceptor
    control = requests.post(f"{proxy.url}/_nemo/upstream/live", timeout=30)
    assert control.status_code == 502 and "Diagnosis: deploying" in control.text
