"""The JUnit property names of a benchmark, written by the plugin and read back
by the terminal summary, `--nemo-baseline` and `nemo-eval-report`.

Test case properties (one test case = one benchmark):

    nemo.benchmark             <suite>::<benchmark>   (the key reports are joined on)
    nemo.harness, nemo.runtime, nemo.image, nemo.image_digest, nemo.samples,
    nemo.duration_s, nemo.suite_sha256, nemo.seed, nemo.outcome
    nemo.code_isolation        the boundary a code benchmark's model-written code ran behind:
                               container | bubblewrap | unsandboxed, or none (harness/code_isolation.py)
    nemo.proxy.<counter>       requests, cache_hits, errors, retries, latency_p50_ms, tokens ...
    nemo.judge.model, nemo.judge.url, nemo.judge.<counter>   a judged benchmark's judge route (runner/judge.py)
    nemo.metric.<metric>.<field>   field = value | stderr | threshold | verdict | ci

Test suite properties (provenance): nemo.checkpoint, nemo.checkpoint_sha256,
nemo.endpoint, nemo.model_id, nemo.version.*, nemo.suite.<suite>.sha256,
nemo.seed, nemo.deployments.
"""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import BaseModel

METRIC_PREFIX = "nemo.metric."
METRIC_FIELDS = ("value", "stderr", "threshold", "verdict", "ci")
PROXY_FIELDS = (
    "requests",
    "errors",
    "cache_hits",
    "retries",
    "latency_p50_ms",
    "latency_p99_ms",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
)


class MetricRecord(BaseModel):
    value: float
    stderr: float | None = None
    threshold: str | None = None
    verdict: str | None = None
    ci: str | None = None


class BenchmarkRecord(BaseModel):
    """One benchmark's scores and facts as read back from properties."""

    benchmark: str
    outcome: str | None = None  # pass | fail | warn | regressed; None: no scores (error/skip)
    metrics: dict[str, MetricRecord] = {}
    info: dict[str, str] = {}


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def metric_properties(scores: dict[str, Any], gate) -> list[tuple[str, str]]:
    """value/stderr for every reported metric; threshold/verdict/ci for the gated ones."""
    verdicts = {v.metric: v for v in gate.verdicts}
    out: list[tuple[str, str]] = []
    for name, score in scores.items():
        base = f"{METRIC_PREFIX}{name}."
        out.append((base + "value", _num(score.value)))
        if score.stderr is not None:
            out.append((base + "stderr", _num(score.stderr)))
        verdict = verdicts.get(name)
        if verdict is not None:
            out.append((base + "threshold", verdict.threshold.describe()))
            out.append((base + "verdict", verdict.verdict))
            if verdict.ci_low is not None:
                out.append((base + "ci", f"[{verdict.ci_low:.6g}, {verdict.ci_high:.6g}]"))
    return out


def run_properties(run) -> list[tuple[str, str]]:
    """Facts of a finished harness run (`HarnessRun`)."""
    counts = [s.stats.count for s in run.results.flat_scores().values() if s.stats.count is not None]
    out = [("nemo.duration_s", f"{run.duration_s:.2f}")]
    if counts:
        out.append(("nemo.samples", str(max(counts))))
    if run.image_digest:
        out.append(("nemo.image_digest", run.image_digest))
    return out


def proxy_properties(stats: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f"nemo.proxy.{key}", str(stats[key])) for key in PROXY_FIELDS if stats.get(key) is not None]


def record_from_properties(pairs: Iterable[tuple[str, Any]]) -> BenchmarkRecord | None:
    """Rebuild a `BenchmarkRecord`; None when the pairs are not a benchmark's."""
    info: dict[str, str] = {}
    metric_fields: dict[str, dict[str, str]] = {}
    for name, value in pairs:
        name, value = str(name), str(value)
        if name.startswith(METRIC_PREFIX):
            metric, _, field = name[len(METRIC_PREFIX):].rpartition(".")
            if field in METRIC_FIELDS and metric:
                metric_fields.setdefault(metric, {})[field] = value
        elif name.startswith("nemo."):
            info[name[len("nemo."):]] = value
    if "benchmark" not in info:
        return None
    metrics = {
        metric: MetricRecord(
            value=float(fields["value"]),
            stderr=float(fields["stderr"]) if fields.get("stderr") else None,
            threshold=fields.get("threshold"),
            verdict=fields.get("verdict"),
            ci=fields.get("ci"),
        )
        for metric, fields in metric_fields.items()
        if fields.get("value")
    }
    return BenchmarkRecord(benchmark=info.pop("benchmark"), outcome=info.pop("outcome", None), metrics=metrics, info=info)
