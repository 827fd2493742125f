"""Compare scores with a baseline run (used by `--nemo-baseline` and `nemo-eval-report`).

Paired when both runs kept per-sample scores of the same items (samples.py's per-sample
files, named by each result's `samples_file`): paired.py's McNemar or permutation test.
Otherwise, and saying why, unpaired: the two stderrs added in quadrature.
Each metric's GO / NO-GO / INCONCLUSIVE is the benchmark's gate policy's (gate_policy.py): the
drop's interval against the margin; McNemar's p, the flips and the detectable drop are evidence.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from pytest_nemo_eval.gate import Comparison, ScoreValue, compare_all
from pytest_nemo_eval.gate_policy import GateDecision, adjust, decide, in_family, live_bound, readjust
from pytest_nemo_eval.paired import PairedTest, paired_test
from pytest_nemo_eval.report.junit import read_reports
from pytest_nemo_eval.results import BenchmarkResult, MetricResult
from pytest_nemo_eval.samples import SampleRecord, SamplesError, read_samples, samples_dir_beside
from pytest_nemo_eval.suite import Correction, GatePolicy


def scores_of(metrics: dict[str, MetricResult]) -> dict[str, ScoreValue]:
    return {name: ScoreValue(value=m.value, stderr=m.stderr) for name, m in metrics.items()}


def lower_is_better(*runs: dict[str, MetricResult]) -> list[str]:
    """Metrics either run declares better when lower (the typed `direction` of each metric)."""
    return sorted({name for metrics in runs for name, m in metrics.items() if m.direction == "lower"})


class NemoBaselineWarning(UserWarning):
    """Per-sample data of a baseline comparison could not be used (the comparison goes on unpaired)."""


class Baseline:
    """The results of a baseline report, by benchmark id."""

    def __init__(self, path: str | Path, *, max_drop: float | None = None, confidence: float = 0.95, seed: int = 0,
                 lenient: bool = False, tolerance: float | None = None) -> None:
        """`max_drop` overrides every benchmark's policy margin (absolute; a relative margin is dropped);
        `tolerance` is its deprecated name (`--nemo-baseline-tolerance`); `lenient`: a supporting
        benchmark's NO-GO warns instead of failing."""
        self.path = Path(path)
        self.max_drop = max_drop if max_drop is not None else tolerance
        self.confidence = confidence
        self.seed = seed
        self.lenient = lenient
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

    def policy(self, policy: GatePolicy | None) -> GatePolicy:
        """The benchmark's policy with the run's `max_drop` override."""
        policy = policy or GatePolicy()
        if self.max_drop is None:
            return policy
        return policy.model_copy(update={"max_drop": self.max_drop, "max_relative_drop": None,
                                         "relative_guard_below": None})

    def family_size(self, benchmarks: list[tuple[str, GatePolicy]]) -> int:
        """How many comparisons of these (benchmark id, policy) can fail the run: the baseline's metrics
        of each critical benchmark (and supporting one, unless lenient) it has. Known before any runs."""
        size = 0
        for benchmark, policy in benchmarks:
            before, _ = self.find(benchmark)
            if before is not None and in_family(self.policy(policy).tier, self.lenient):
                size += len(before.metrics)
        return size

    def compare(
        self, benchmark: str, metrics: dict[str, MetricResult], samples_file: str | None = None, *,
        policy: GatePolicy | None = None, family_size: int | None = None,
    ) -> list[Comparison] | None:
        """Every metric shared with the baseline, each with its gate decision; None when the baseline
        lacks the benchmark. With `family_size` (a run in progress) NO-GO reads `live_bound`'s p."""
        before, suite_note = self.find(benchmark)
        if before is None:
            return None
        policy = self.policy(policy)
        comparisons = compare_all(
            benchmark,
            scores_of(metrics),
            scores_of(before.metrics),
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
                update.update(paired=paired, baseline_samples=str(self._path(before.samples_file or "")))
            decided = self._decide(comparison.model_copy(update=update), metrics, before.metrics[comparison.metric],
                                   policy, family_size)
            out.append(decided)
        return out

    def _decide(self, c: Comparison, metrics: dict[str, MetricResult], before: MetricResult, policy: GatePolicy,
                family_size: int | None) -> Comparison:
        if c.paired is not None:
            drop, stderr = c.paired.drop, c.paired.stderr
            interval = f"paired {c.paired.method}" + (", clustered" if c.paired.clusters else "")
        else:
            sign = 1.0 if c.higher_is_better else -1.0
            drop = sign * (c.baseline - c.current)
            stderr = math.hypot(metrics[c.metric].stderr or 0.0, before.stderr or 0.0)
            interval = "unpaired normal" if stderr > 0 else "unpaired, no stderr (point values)"
        margin = policy.margin(c.baseline)
        decision = decide(drop, stderr, margin, tier=policy.tier, confidence=self.confidence, interval=interval)
        if family_size and in_family(policy.tier, self.lenient):
            decision = readjust(decision, live_bound(decision.p_value, family_size),
                                f"bonferroni bound over {family_size} (live)")
        return _with_decision(c, decision, self.lenient)


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


def _with_decision(c: Comparison, decision: GateDecision, lenient: bool) -> Comparison:
    return c.model_copy(update={"decision": decision, "allowed": decision.margin,
                                "regressed": decision.verdict == "NO-GO" and in_family(decision.tier, lenient)})


def adjust_family(
    compared: dict[str, list[Comparison] | None], method: Correction, lenient: bool = False,
) -> dict[str, list[Comparison] | None]:
    """The finished run's adjustment: every comparison that can fail the run (`in_family`) re-decided
    with its Holm (or BH) adjusted p over all of them; the others keep their raw p."""
    keys = [(bid, i) for bid, comparisons in compared.items() for i, c in enumerate(comparisons or [])
            if c.decision is not None and in_family(c.decision.tier, lenient)]
    raw = [compared[bid][i].decision.p_value for bid, i in keys]  # type: ignore[index,union-attr]
    out = {bid: list(comparisons) if comparisons is not None else None for bid, comparisons in compared.items()}
    for (bid, i), p in zip(keys, adjust(raw, method)):
        c = out[bid][i]  # type: ignore[index]
        assert c.decision is not None
        out[bid][i] = _with_decision(c, readjust(c.decision, p, f"{method} over {len(keys)}"), lenient)  # type: ignore[index]
    return out
