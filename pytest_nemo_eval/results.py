"""The typed result of a benchmark (`BenchmarkResult`) and of a pytest session (`RunResult`).

Built once, where a benchmark finishes (runner/items.py via runner/execute.py), then handed
unchanged to everything that shows or stores it: JUnit properties (report/properties.py, the
only module that writes and reads them), the terminal table, the baseline comparison, the JSON
results file, `nemo-eval-report` and every exporter (our pytest hooks in newhooks.py). Under
xdist a worker sends a result to the controller as one JSON document (`model_dump_json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from pytest_nemo_eval.gate import Comparison, Verdict
from pytest_nemo_eval.suite import Correction, GatePolicy, Threshold, benchmark_id

__all__ = [
    "BenchmarkResult",
    "Direction",
    "MetricResult",
    "Outcome",
    "RunResult",
    "Status",
    "benchmark_id",
    "direction_of",
]

SCHEMA_VERSION = 1

Direction = Literal["higher", "lower"]
Status = Literal["passed", "failed", "error", "skipped"]
Outcome = Literal["pass", "fail", "warn", "regressed"]


def direction_of(threshold: Threshold | None) -> Direction:
    """A metric gated only by a `max` bound is better when lower; every other metric when higher."""
    if threshold is not None and threshold.min is None and threshold.max is not None:
        return "lower"
    return "higher"


class MetricResult(BaseModel):
    """One score: value, its standard error and interval, and its check against the threshold."""

    value: float
    stderr: float | None = None
    count: int | None = None  # samples behind the value, as the harness reported them
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str | None = None  # which interval: Wilson, normal, betting CS (an early-stopped benchmark)
    threshold: Threshold | None = None
    direction: Direction = "higher"
    verdict: Verdict | None = None  # None: reported, not gated


class BenchmarkResult(BaseModel):
    """Everything one benchmark produced: scores, verdict, provenance, proxy counters."""

    benchmark: str  # `<suite>::<name>` (suite.benchmark_id), the join key of every report
    status: Status
    outcome: Outcome | None = None  # None when no scores were produced (error, skip)
    metrics: dict[str, MetricResult] = Field(default_factory=dict)
    message: str | None = None  # why it failed, errored or was skipped (first lines)
    harness: str | None = None  # `<harness>.<task>`
    runtime: str | None = None
    runtime_reason: str | None = None
    image: str | None = None
    image_digest: str | None = None
    code_isolation: str | None = None
    samples: int | None = None
    sampling: str | None = None  # which samples: all | first-n n=N | seeded-random n=N seed=S (harness/invocation.py)
    duration_s: float | None = None
    suite_sha256: str | None = None
    seed: int | None = None
    proxy: dict[str, float] = Field(default_factory=dict)  # ProxyStats counters of this route
    judge: dict[str, str] = Field(default_factory=dict)  # a judged benchmark's judge: model, url, route counters
    samples_file: str | None = None  # per-sample outputs (samples.py's JSONL), when the harness logged them
    results_file: str | None = None  # the harness's results.yml
    proxy_log: str | None = None  # folder of the proxy's requests.jsonl / responses.jsonl for this benchmark
    reused_from: str | None = None  # the stored result of an earlier run of the same inputs (resume), if reused
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)  # the suite's, sent with every chat request
    baseline: list[Comparison] = Field(default_factory=list)  # every metric shared with the baseline
    gate: GatePolicy | None = None  # the baseline gate's policy the benchmark was judged by
    multiple_comparisons: Correction | None = None  # the suite's adjustment of the run's NO-GO p-values
    early_stop: dict[str, Any] | None = None  # samples used and planned, why it stopped (harness early_stop.json)

    @property
    def suite(self) -> str:
        return self.benchmark.split("::", 1)[0]

    @property
    def name(self) -> str:
        return self.benchmark.split("::", 1)[-1]

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.baseline if c.regressed]


class RunResult(BaseModel):
    """A pytest session: its provenance (model, versions, suites) and every benchmark's result."""

    schema_version: int = SCHEMA_VERSION
    provenance: dict[str, str] = Field(default_factory=dict)
    benchmarks: list[BenchmarkResult] = Field(default_factory=list)

    def by_benchmark(self) -> dict[str, BenchmarkResult]:
        """Latest result per benchmark id (a later file or re-run wins)."""
        return {result.benchmark: result for result in self.benchmarks}

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def read_json(cls, path: str | Path) -> RunResult:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))
