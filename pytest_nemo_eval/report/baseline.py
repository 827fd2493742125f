"""Compare scores with a baseline JUnit report (used by `--nemo-baseline` and `nemo-eval-report`)."""

from __future__ import annotations

from pathlib import Path

from pytest_nemo_eval.gate import Comparison, ScoreValue, compare_all
from pytest_nemo_eval.report.junit import read_reports
from pytest_nemo_eval.report.properties import BenchmarkRecord


def scores_of(record: BenchmarkRecord) -> dict[str, ScoreValue]:
    return {name: ScoreValue(value=m.value, stderr=m.stderr) for name, m in record.metrics.items()}


def lower_is_better(record: BenchmarkRecord) -> list[str]:
    """Metrics gated only by a `max` threshold ('<= x') are better when lower."""
    return [name for name, m in record.metrics.items() if (m.threshold or "").startswith("<=")]


class Baseline:
    """The scores of a baseline report, by benchmark id."""

    def __init__(self, path: str | Path, *, tolerance: float = 0.0, confidence: float = 0.95) -> None:
        self.path = Path(path)
        self.tolerance = tolerance
        self.confidence = confidence
        self.records = {bid: case.record for bid, case in read_reports([self.path]).by_benchmark().items()}

    def compare(self, record: BenchmarkRecord) -> list[Comparison] | None:
        """Every shared metric of `record` versus the baseline; None when the baseline lacks the benchmark."""
        before = self.records.get(record.benchmark)
        if before is None:
            return None
        return compare_all(
            record.benchmark,
            scores_of(record),
            scores_of(before),
            tolerance=self.tolerance,
            confidence=self.confidence,
            lower_is_better=lower_is_better(record) + lower_is_better(before),
        )

    def regressions(self, record: BenchmarkRecord) -> list[Comparison]:
        return [c for c in self.compare(record) or [] if c.regressed]
