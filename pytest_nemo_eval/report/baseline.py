"""Compare scores with a baseline run (used by `--nemo-baseline` and `nemo-eval-report`)."""

from __future__ import annotations

from pathlib import Path

from pytest_nemo_eval.gate import Comparison, ScoreValue, compare_all
from pytest_nemo_eval.report.junit import read_reports
from pytest_nemo_eval.results import BenchmarkResult, MetricResult


def scores_of(metrics: dict[str, MetricResult]) -> dict[str, ScoreValue]:
    return {name: ScoreValue(value=m.value, stderr=m.stderr) for name, m in metrics.items()}


def lower_is_better(*runs: dict[str, MetricResult]) -> list[str]:
    """Metrics either run declares better when lower (the typed `direction` of each metric)."""
    return sorted({name for metrics in runs for name, m in metrics.items() if m.direction == "lower"})


class Baseline:
    """The results of a baseline report, by benchmark id."""

    def __init__(self, path: str | Path, *, tolerance: float = 0.0, confidence: float = 0.95) -> None:
        self.path = Path(path)
        self.tolerance = tolerance
        self.confidence = confidence
        self.results: dict[str, BenchmarkResult] = read_reports([self.path]).by_benchmark()

    def compare(self, benchmark: str, metrics: dict[str, MetricResult]) -> list[Comparison] | None:
        """Every metric shared with the baseline; None when the baseline lacks the benchmark."""
        before = self.results.get(benchmark)
        if before is None:
            return None
        return compare_all(
            benchmark,
            scores_of(metrics),
            scores_of(before.metrics),
            tolerance=self.tolerance,
            confidence=self.confidence,
            lower_is_better=lower_is_better(metrics, before.metrics),
        )
