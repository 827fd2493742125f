"""Thresholds, confidence intervals and baseline comparison: the pass/fail logic.

Pure functions over plain numbers so the same rules run inside pytest, in
`nemo-eval-report` and in tests without any server.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Iterable, Literal

from pydantic import BaseModel

from pytest_nemo_eval.gate_policy import GateDecision
from pytest_nemo_eval.paired import PairedTest
from pytest_nemo_eval.suite import InconclusivePolicy, Threshold

Verdict = Literal["pass", "fail", "inconclusive"]
IntervalMethod = Literal["normal", "Wilson", "betting CS"]  # betting CS: confseq.py, an early-stopped benchmark


class ScoreValue(BaseModel):
    """One score a harness produced."""

    value: float
    stderr: float | None = None
    count: int | None = None


class MetricVerdict(BaseModel):
    """The check of one metric against its threshold."""

    metric: str
    value: float
    stderr: float | None
    threshold: Threshold
    verdict: Verdict
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: IntervalMethod | None = None
    miss: float = 0.0  # how far the score is on the wrong side (0 when it passes)

    def describe(self) -> str:
        score = f"{self.value:.4f}" + (f" ± {self.stderr:.4f}" if self.stderr is not None else "")
        ci = (f" (CI [{self.ci_low:.4f}, {self.ci_high:.4f}], {self.ci_method})"
              if self.ci_low is not None else "")
        missed = f", missed by {self.miss:.4f}" if self.verdict != "pass" and self.miss > 0 else ""
        return f"{self.metric} = {score}{ci} threshold {self.threshold.describe()}: {self.verdict.upper()}{missed}"


class GateResult(BaseModel):
    """All metric verdicts of one benchmark and the overall outcome."""

    verdicts: list[MetricVerdict]
    confidence: float | None
    inconclusive_policy: InconclusivePolicy

    @property
    def failed(self) -> list[MetricVerdict]:
        return [v for v in self.verdicts if v.verdict == "fail"]

    @property
    def inconclusive(self) -> list[MetricVerdict]:
        return [v for v in self.verdicts if v.verdict == "inconclusive"]

    @property
    def outcome(self) -> Literal["pass", "fail", "warn"]:
        """fail if any metric fails, or is inconclusive under policy `fail`; warn under policy `warn`."""
        if self.failed or (self.inconclusive and self.inconclusive_policy == "fail"):
            return "fail"
        if self.inconclusive and self.inconclusive_policy == "warn":
            return "warn"
        return "pass"

    def message(self, benchmark: str) -> str:
        """Every metric, its value ± stderr, the threshold and the miss, one per line."""
        mode = f" at {self.confidence:.0%} confidence" if self.confidence else ""
        head = f"benchmark {benchmark!r}: {len(self.failed)} failed, {len(self.inconclusive)} inconclusive{mode}"
        if self.inconclusive:
            head += f" (inconclusive policy: {self.inconclusive_policy})"
        return "\n".join([head] + [f"  {v.describe()}" for v in self.verdicts])


class UnknownMetricError(LookupError):
    """A threshold names a metric the harness did not produce."""


def z_value(confidence: float) -> float:
    """Two-sided normal quantile, e.g. 0.95 -> 1.96."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def binomial_successes(score: ScoreValue) -> int | None:
    """The number of successes when the score is a proportion of `count` 0/1 outcomes (accuracy, pass@1
    with one sample, exact match), else None. Recognised by value·count being whole and the stderr being
    the binomial one, √(p(1−p)/n) or the sample-stddev form √(p(1−p)/(n−1)) that lm-eval reports."""
    p, n, se = score.value, score.count, score.stderr
    if n is None or n < 1 or se is None or not 0.0 <= p <= 1.0:
        return None
    k = round(p * n)
    if abs(p * n - k) > 1e-6 * n:
        return None
    forms = [math.sqrt(p * (1 - p) / n)] + ([math.sqrt(p * (1 - p) / (n - 1))] if n > 1 else [])
    return k if any(math.isclose(se, form, rel_tol=1e-3, abs_tol=1e-9) for form in forms) else None


def interval(score: ScoreValue, confidence: float) -> tuple[float, float, IntervalMethod]:
    """The score's two-sided interval: Wilson's for a proportion (it stays inside [0, 1] and does not
    shrink to a point at 0 or 1, where value ± z·stderr claims certainty from ten samples), else the
    normal approximation value ± z·stderr (a point when the harness reported no stderr)."""
    k = binomial_successes(score)
    if k is not None and score.count is not None:
        from scipy.stats import binomtest  # 1.2 s to import: only when a gate asks for an interval

        ci = binomtest(k, score.count).proportion_ci(confidence_level=confidence, method="wilson")
        return max(0.0, float(ci.low)), min(1.0, float(ci.high)), "Wilson"
    half = z_value(confidence) * (score.stderr or 0.0)
    return score.value - half, score.value + half, "normal"


def check_metric(
    metric: str, score: ScoreValue, threshold: Threshold, confidence: float | None = None
) -> MetricVerdict:
    """Plain mode compares the value; confidence mode compares the score's interval (`interval`)
    and fails only when all of it is on the wrong side."""
    low = high = score.value
    ci_low = ci_high = None
    method: IntervalMethod | None = None
    if confidence is not None:
        low, high, method = interval(score, confidence)
        ci_low, ci_high = low, high
    miss_below = threshold.min - score.value if threshold.min is not None else -math.inf
    miss_above = score.value - threshold.max if threshold.max is not None else -math.inf
    fails = (threshold.min is not None and high < threshold.min) or (threshold.max is not None and low > threshold.max)
    passes = (threshold.min is None or low >= threshold.min) and (threshold.max is None or high <= threshold.max)
    verdict: Verdict = "fail" if fails else ("pass" if passes else "inconclusive")
    return MetricVerdict(
        metric=metric,
        value=score.value,
        stderr=score.stderr,
        threshold=threshold,
        verdict=verdict,
        ci_low=ci_low,
        ci_high=ci_high,
        ci_method=method,
        miss=max(0.0, miss_below, miss_above),
    )


def require_metrics(scores: dict[str, ScoreValue], thresholds: dict[str, Threshold]) -> None:
    """Raise `UnknownMetricError` for a threshold on a metric not in `scores`, naming those produced."""
    missing = [name for name in thresholds if name not in scores]
    if missing:
        produced = ", ".join(sorted(scores)) or "(none)"
        hints = "".join(_filtered_metric_hint(name, scores) for name in missing)
        raise UnknownMetricError(
            f"threshold(s) on {', '.join(repr(m) for m in missing)} but the harness produced no such metric. "
            f"Metrics it produced: {produced}. Rename the threshold in the suite file to one of these.{hints}"
        )


def _filtered_metric_hint(name: str, scores: dict[str, ScoreValue]) -> str:
    """lm-eval reports a filtered metric as `exact_match,strict-match`; eval-factory's results.yml
    names it `exact_match__strict-match`, so `exact_match.strict-match` is a likely slip."""
    metric, dot, filter_name = name.rpartition(".")
    if not dot or not metric:
        return ""
    wanted = f"{metric}__{filter_name}"
    if wanted in scores:
        return f" Did you mean {wanted!r}? eval-factory names a filtered metric `<metric>__<filter>`."
    same_metric = sorted(n for n in scores if n.startswith(f"{metric}__") and "." not in n)
    if same_metric:
        return (f" eval-factory names a filtered metric `<metric>__<filter>`; "
                f"for {metric!r} it produced: {', '.join(same_metric)}.")
    return ""


def evaluate(
    scores: dict[str, ScoreValue],
    thresholds: dict[str, Threshold],
    *,
    confidence: float | None = None,
    inconclusive: InconclusivePolicy = "fail",
) -> GateResult:
    """Check every threshold (see `require_metrics` for unknown metric names)."""
    require_metrics(scores, thresholds)
    verdicts = [check_metric(name, scores[name], t, confidence) for name, t in thresholds.items()]
    return GateResult(verdicts=verdicts, confidence=confidence, inconclusive_policy=inconclusive)


class Comparison(BaseModel):
    """One metric versus the baseline. Unpaired: `regressed` when it got worse by more than
    `allowed`; paired (per-sample scores of the same items in both runs): by `paired`'s test."""

    benchmark: str
    metric: str
    baseline: float
    current: float
    allowed: float
    higher_is_better: bool
    regressed: bool
    paired: PairedTest | None = None
    note: str | None = None  # what differs between the runs, or why the comparison is unpaired
    baseline_samples: str | None = None  # the baseline's per-sample file the paired test read
    decision: GateDecision | None = None  # the gate policy's GO / NO-GO / INCONCLUSIVE (gate_policy.py)

    @property
    def verdict(self) -> str | None:
        return self.decision.verdict if self.decision is not None else None

    @property
    def method(self) -> str:
        return self.paired.method if self.paired is not None else "unpaired"

    def describe(self) -> str:
        change = self.current - self.baseline
        text = (
            f"{self.benchmark} {self.metric}: {self.baseline:.4f} -> {self.current:.4f} "
            f"({change:+.4f}; allowed drop {self.allowed:.4f})"
        )
        if self.decision is not None:
            text += f"; {self.decision.describe()}"
        if self.paired is not None:
            text += f"; {self.paired.describe()}"
        if self.note:
            text += f"; {self.note}"
        return text


def compare_all(
    benchmark: str,
    current: dict[str, ScoreValue],
    baseline: dict[str, ScoreValue],
    *,
    tolerance: float = 0.0,
    confidence: float = 0.95,
    lower_is_better: Iterable[str] = (),
) -> list[Comparison]:
    """Every metric present in both runs. It regressed when it got worse by more than
    `tolerance` + z·sqrt(se_current² + se_baseline²) (the noise of the difference, when stderr is known)."""
    lower = set(lower_is_better)
    out = []
    for metric in sorted(set(current) & set(baseline)):
        now, before = current[metric], baseline[metric]
        allowed = tolerance + math.hypot(now.stderr or 0.0, before.stderr or 0.0) * z_value(confidence)
        higher_is_better = metric not in lower
        drop = (before.value - now.value) if higher_is_better else (now.value - before.value)
        out.append(
            Comparison(
                benchmark=benchmark,
                metric=metric,
                baseline=before.value,
                current=now.value,
                allowed=allowed,
                higher_is_better=higher_is_better,
                regressed=drop > allowed + 1e-12,
            )
        )
    return out


def compare_to_baseline(benchmark: str, current, baseline, **kwargs) -> list[Comparison]:
    """Only the regressions of `compare_all`."""
    return [c for c in compare_all(benchmark, current, baseline, **kwargs) if c.regressed]


def name_scores(flat: dict[str, ScoreValue], task: str) -> dict[str, ScoreValue]:
    """The names a threshold may use for a harness's scores.

    `flat` is keyed '<task>.<metric>.<score>'. Every score keeps that full name;
    the scores of the benchmark's own task (or of the only task) also get
    '<metric>.<score>', and '<metric>' when the metric has a single score or a
    score named like the metric (eval-factory's usual shape).
    """
    named = dict(flat)
    tasks = {key.rsplit(".", 2)[0] for key in flat}
    short_task = task.split(".", 1)[-1]
    main = next((t for t in (task, short_task) if t in tasks), None)
    if main is None and len(tasks) == 1:
        main = next(iter(tasks))
    if main is None:
        return named
    per_metric: dict[str, dict[str, ScoreValue]] = {}
    for key, score in flat.items():
        task_name, metric, score_name = key.rsplit(".", 2)
        if task_name == main:
            per_metric.setdefault(metric, {})[score_name] = score
    for metric, scores in per_metric.items():
        for score_name, score in scores.items():
            named.setdefault(f"{metric}.{score_name}", score)
        if len(scores) == 1 or metric in scores:
            named.setdefault(metric, scores.get(metric) or next(iter(scores.values())))
    return named


def short_names(named: dict[str, ScoreValue], flat: dict[str, ScoreValue]) -> list[str]:
    """The shortest alias of each main-task score (to report every metric once)."""
    best: dict[int, str] = {}
    for name, score in named.items():
        current = best.get(id(score))
        if name not in flat and (current is None or (name.count("."), name) < (current.count("."), current)):
            best[id(score)] = name
    return sorted(best.values())
