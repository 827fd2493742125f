"""HTTP helpers for processes that use a proxy started elsewhere (pytest-xdist workers).

The controller starts one `ProxyServer` and passes its URL to workers; each
worker registers its benchmark and later reads that benchmark's stats.
"""

from __future__ import annotations

import requests

from .config import AdapterConfig
from .stats import ProxyStats


class ProxyClientError(RuntimeError):
    """The proxy refused or could not be reached; the message says which and why."""


def register_benchmark(proxy_url: str, name: str, config: AdapterConfig | None = None, *, timeout_s: float = 30) -> str:
    """Register `name` with its own config (None: the proxy's default config); returns its
    base URL (`<proxy>/b/<name>`)."""
    payload = {"name": name, "config": config.model_dump(mode="json", exclude_defaults=True) if config else None}
    return _call("POST", f"{proxy_url.rstrip('/')}/_nemo/benchmarks", timeout_s, json=payload)["url"]


def fetch_stats(proxy_url: str, name: str | None = None, *, timeout_s: float = 30) -> ProxyStats:
    """Stats of benchmark `name`, or the proxy's totals when None."""
    suffix = f"/{name}" if name else ""
    return ProxyStats.model_validate(_call("GET", f"{proxy_url.rstrip('/')}/_nemo/stats{suffix}", timeout_s))


def is_healthy(proxy_url: str, *, timeout_s: float = 5) -> bool:
    try:
        return requests.get(f"{proxy_url.rstrip('/')}/_nemo/health", timeout=timeout_s).ok
    except requests.RequestException:
        return False


def _call(method: str, url: str, timeout_s: float, **kwargs) -> dict:
    try:
        reply = requests.request(method, url, timeout=timeout_s, **kwargs)
    except requests.RequestException as exc:
        raise ProxyClientError(f"Cannot reach the nemo-eval proxy at {url}: {exc}. Is the controller's proxy still running?") from exc
    try:
        data = reply.json()
    except ValueError:
        data = None
    if not reply.ok or not isinstance(data, dict):
        message = (data or {}).get("error", {}).get("message") if isinstance(data, dict) else reply.text[:300]
        raise ProxyClientError(f"The nemo-eval proxy answered {reply.status_code} to {method} {url}: {message}")
    return data
