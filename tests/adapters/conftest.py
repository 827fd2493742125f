"""Fixtures for the proxy's tests: real servers on loopback, nothing mocked.

`upstream` is a real HTTP server (waitress) with scripted behaviour — it stands
in for the model server so faults can be produced on demand; the test against
the real megatron-core deployment is in test_real_model.py.
"""

from __future__ import annotations

import pytest
import requests

from pytest_nemo_eval.adapters import AdapterConfig, ProxyServer
from .scripted_upstream import ScriptedUpstream


@pytest.fixture
def upstream():
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture
def start_proxy(tmp_path):
    """Factory: `start_proxy(upstream_url, config, **kwargs)` -> started ProxyServer, stopped after the test."""
    started: list[ProxyServer] = []

    def start(upstream_url: str, config: AdapterConfig | None = None, **kwargs) -> ProxyServer:
        kwargs.setdefault("log_dir", tmp_path / "logs")
        kwargs.setdefault("cache_path", tmp_path / "cache.sqlite")
        proxy = ProxyServer(upstream_url, config, **kwargs).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session

