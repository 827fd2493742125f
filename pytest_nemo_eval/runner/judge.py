"""A judged benchmark's judge behind a proxy route of its own, for as long as its harness runs.

`judge: deployment` is the model under test: a second route (`<route>.judge`) on the run's proxy. A judge
endpoint gets a proxy of its own in this process (cache, retries, logs, stats as every route; its API key
injected there, so the harness never holds it), which stops when the harness ends. Either way the harness
is told the route's URL in the framework's `config.params.extra.judge.*` (harness/judge.py), an
unreachable judge fails the benchmark before the harness starts, and the route's counters become the
JUnit properties `nemo.judge.*`.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pytest_nemo_eval.report import properties as props

JUDGE_ROUTE_SUFFIX = ".judge"


class JudgeRoute(BaseModel):
    """What the harness is told about its judge, and how to read the judge route's counters afterwards."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    overrides: dict[str, Any] = {}
    described: list[tuple[str, str]] = []
    stats: Callable[[], dict[str, Any]] | None = None
    collected: list[tuple[str, str]] = []

    def snapshot(self) -> None:
        """Read the route's counters (judge_route does, as the harness ends, before its proxy stops)."""
        if self.stats is None:
            return
        try:
            stats = self.stats()
        except Exception:  # noqa: BLE001 - stats are a report; the benchmark's own result is what matters
            stats = {}
        counters = [(f"nemo.judge.{key}", str(stats[key])) for key in props.PROXY_FIELDS if stats.get(key) is not None]
        self.collected = self.described + counters

    def properties(self) -> list[tuple[str, str]]:
        """`nemo.judge.model`, `nemo.judge.url` and the route's `nemo.judge.<counter>`s."""
        return self.collected


@contextlib.contextmanager
def judge_route(benchmark, route: str, *, target, proxy, adapter: dict[str, Any], output_dir: Path) -> Iterator[JudgeRoute]:
    """The benchmark's judge route while the `with` block runs (an empty JudgeRoute when it has no judge)."""
    from pytest_nemo_eval.harness.judge import chat_url, judge_overrides, require_reachable, upstream_base

    judge = benchmark.judge
    if judge is None:
        yield JudgeRoute()
        return
    name = route + JUDGE_ROUTE_SUFFIX
    if judge == "deployment":
        base = proxy.register(name, adapter)
        from pytest_nemo_eval.runner.resources import ProxyControl

        control = ProxyControl(target.proxy_url)
        route_info = JudgeRoute(
            overrides=judge_overrides(benchmark.harness, url=chat_url(base), model_id=target.model_id, api_key_env=None),
            described=[("nemo.judge.model", target.model_id), ("nemo.judge.url", "deployment")],
            stats=lambda: control.stats(name),
        )
        try:
            yield route_info
        finally:
            route_info.snapshot()
        return
    require_reachable(judge.url, benchmark=benchmark.id, model_id=judge.model_id)
    from pytest_nemo_eval.adapters.config import AdapterConfig
    from pytest_nemo_eval.adapters.server import ProxyServer

    output_dir.mkdir(parents=True, exist_ok=True)
    server = ProxyServer(upstream_base(judge.url), cache_path=output_dir / "judge-cache.sqlite",
                         upstream_api_key_env=judge.api_key_env, log_dir=output_dir / "judge-proxy").start()
    try:
        base = server.register_benchmark(name, AdapterConfig.parse_user(adapter, source=f"adapter of judge {name}"))
        path = urllib.parse.urlsplit(judge.url).path
        route_info = JudgeRoute(
            overrides=judge_overrides(benchmark.harness, url=chat_url(base + path), model_id=judge.model_id,
                                      api_key_env=None),
            described=[("nemo.judge.model", judge.model_id), ("nemo.judge.url", judge.url)],
            stats=lambda: server.stats(name).model_dump(),
        )
        try:
            yield route_info
        finally:
            route_info.snapshot()
    finally:
        server.stop()
