"""Compare scores with a baseline run (used by `--nemo-baseline` and `nemo-eval-report`).

Paired when both runs kept per-sample scores of the same items (samples.py's per-sample
files, named by each result's `samples_file`): paired.py's McNemar or permutation test.
Otherwise, and saying why, unpaired: gate.compare_all's noise margin from the two stderrs.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from pytest_nemo_eval.gate import Comparison, ScoreValue, compare_all
from pytest_nemo_eval.paired import PairedTest, paired_test
from pytest_nemo_eval.report.junit import read_reports
from pytest_nemo_eval.results import BenchmarkResult, MetricResult
from pytest_nemo_eval.samples import SampleRecord, SamplesError, read_samples, samples_dir_beside


def scores_of(metrics: dict[str, MetricResult]) -> dict[str, ScoreValue]:
    return {name: ScoreValue(value=m.value, stderr=m.stderr) for name, m in metrics.items()}


def lower_is_better(*runs: dict[str, MetricResult]) -> list[str]:
    """Metrics either run declares better when lower (the typed `direction` of each metric)."""
    return sorted({name for metrics in runs for name, m in metrics.items() if m.direction == "lower"})


class NemoBaselineWarning(UserWarning):
    """Per-sample data of a baseline comparison could not be used (the comparison goes on unpaired)."""


class Baseline:
    """The results of a baseline report, by benchmark id."""

    def __init__(self, path: str | Path, *, tolerance: float = 0.0, confidence: float = 0.95, seed: int = 0) -> None:
        self.path = Path(path)
        self.tolerance = tolerance
        self.confidence = confidence
        self.seed = seed
        # a benchmark that errored there kept its partial scores as evidence: never a baseline to compare with
        self.results: dict[str, BenchmarkResult] = {
            bid: r for bid, r in read_reports([self.path]).by_benchmark().items() if r.status != "error"}

    def find(self, benchmark: str) -> tuple[BenchmarkResult | None, str | None]:
        """The baseline's result for `benchmark`, and a note when it was matched from another suite."""
        if benchmark in self.results:
            return self.results[benchmark], None
        name = benchmark.split("::", 1)[-1]
        same_name = [r for r in self.results.values() if r.name == name]
        if len(same_name) == 1:
            other = same_name[0]
            return other, (f"baseline {self.path} has no {benchmark!r}; compared with {other.benchmark!r} "
                           f"(suite {other.suite!r}, not {benchmark.split('::', 1)[0]!r})")
        return None, None

    def compare(
        self, benchmark: str, metrics: dict[str, MetricResult], samples_file: str | None = None
    ) -> list[Comparison] | None:
        """Every metric shared with the baseline; None when the baseline lacks the benchmark."""
        before, suite_note = self.find(benchmark)
        if before is None:
            return None
        comparisons = compare_all(
            benchmark,
            scores_of(metrics),
            scores_of(before.metrics),
            tolerance=self.tolerance,
            confidence=self.confidence,
            lower_is_better=lower_is_better(metrics, before.metrics),
        )
        samples, why_unpaired = self._both_samples(before, samples_file)
        out = []
        for comparison in comparisons:
            note, paired = why_unpaired, None
            if samples is not None:
                paired, note = self._paired(comparison, before.metrics[comparison.metric], *samples)
            update: dict[str, object] = {"note": "; ".join(n for n in (suite_note, note) if n) or None}
            if paired is not None:
                update.update(paired=paired, regressed=paired.regressed(1 - self.confidence, self.tolerance),
                              baseline_samples=str(self._path(before.samples_file or "")))
            out.append(comparison.model_copy(update=update))
        return out

    def _both_samples(
        self, before: BenchmarkResult, samples_file: str | None
    ) -> tuple[tuple[dict[str, SampleRecord], dict[str, SampleRecord]] | None, str | None]:
        if not before.samples_file or not samples_file:
            which = "the baseline" if not before.samples_file else "this run"
            return None, f"unpaired: {which} kept no per-sample scores"
        try:
            return (self._read(before.samples_file), read_samples(samples_file)), None
        except SamplesError as exc:  # never crash the gate on it: warn, compare unpaired
            warnings.warn(NemoBaselineWarning(f"{exc}; comparing {before.benchmark} unpaired"), stacklevel=2)
            return None, f"unpaired: {exc}"

    def _path(self, samples_file: str) -> Path:
        """A baseline's per-sample file: the copy kept beside the baseline report (`gate.samples/`,
        which a later run in the same output dir cannot overwrite), else the recorded path."""
        kept = samples_dir_beside(self.path) / Path(samples_file).name
        return kept if kept.is_file() else Path(samples_file)

    def _read(self, samples_file: str) -> dict[str, SampleRecord]:
        return read_samples(self._path(samples_file))

    def _paired(
        self, comparison: Comparison, before_metric: MetricResult,
        before: dict[str, SampleRecord], now: dict[str, SampleRecord],
    ) -> tuple[PairedTest | None, str | None]:
        metric = comparison.metric
        old = {i: s for i, r in before.items() if (s := r.score(metric)) is not None}
        new = {i: s for i, r in now.items() if (s := r.score(metric)) is not None}
        if not old or not new:
            return None, f"unpaired: no per-sample {metric!r} scores"
        mean = sum(old.values()) / len(old)
        if not math.isclose(mean, before_metric.value, rel_tol=1e-6, abs_tol=1e-9):
            return None, (f"unpaired: the baseline's per-sample file gives {metric} = {mean:.4f}, not the "
                          f"reported {before_metric.value:.4f} (overwritten by a later run?)")
        shared = set(old) & set(new)
        note = None
        if len(shared) != len(old) or len(shared) != len(new):
            note = (f"items differ: {len(set(old) - shared)} only in the baseline, {len(set(new) - shared)} "
                    f"only in this run; paired on the {len(shared)} shared")
        clusters = {i: r.cluster for i, r in now.items() if r.cluster is not None} or None
        test = paired_test(old, new, higher_is_better=comparison.higher_is_better, alpha=1 - self.confidence,
                           clusters=clusters, seed=self.seed)
        if test is None:
            return None, f"unpaired: only {len(shared)} shared items (a paired test needs 10)"
        return test, note
