"""The release decision on one metric versus its baseline: GO / NO-GO / INCONCLUSIVE.

A release gate asks whether the drop is *smaller than what we accept* (the policy's margin), not
whether it is significant: with thousands of items a 0.2-point drop is significant, with 50 items a
10-point drop is not. So (as NeMo Evaluator's `engine/gate.py`) the two-sided interval of the drop
(paired and clustered where the items allow, paired.py) is set against the margin:

- GO: the whole interval is at most the margin (the drop is shown to be acceptable);
- NO-GO: the whole interval is above the margin, i.e. the one-sided p-value of "the true drop is at
  most the margin", p = 1 - Phi((drop - margin) / se), is below alpha/2; with many comparisons that p
  is first adjusted (Holm for the family-wise error rate, or Benjamini-Hochberg) over the run's
  comparisons that can fail it;
- INCONCLUSIVE otherwise: collect more samples.

A release needs every metric GO, an intersection-union test that needs no adjustment; only NO-GO
(failing a release) is adjusted. Pure functions over numbers: used by report/baseline.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

from pydantic import BaseModel

from pytest_nemo_eval.suite import Correction, InconclusivePolicy, Tier

GateVerdict = Literal["GO", "NO-GO", "INCONCLUSIVE"]
Effect = Literal["fail", "warn", "pass"]


class GateDecision(BaseModel):
    """The verdict on one metric and the numbers it came from (`drop` > 0: the new run is worse)."""

    verdict: GateVerdict
    tier: Tier
    margin: float  # the drop accepted (the policy's max_drop, or relative margin)
    drop: float
    stderr: float  # of the drop (paired, clustered where the items cluster)
    ci_low: float
    ci_high: float
    confidence: float
    interval: str  # which interval: "paired mcnemar", "paired permutation, clustered", "unpaired normal"
    p_value: float  # raw one-sided p of "the true drop is at most the margin"
    p_adjusted: float | None = None  # after the multiple-comparison adjustment (None: not in the family)
    correction: str | None = None  # e.g. "holm over 6", "bonferroni bound over 6 (live)"

    @property
    def alpha(self) -> float:
        return 1 - self.confidence

    def describe(self) -> str:
        adjusted = f", adjusted {self.p_adjusted:.3g} ({self.correction})" if self.p_adjusted is not None else ""
        return (f"{self.verdict} ({self.tier}): drop {self.drop:+.4f}, {self.confidence:.0%} interval "
                f"[{self.ci_low:+.4f}, {self.ci_high:+.4f}] ({self.interval}) vs margin {self.margin:.4f}; "
                f"p(drop ≤ margin) {self.p_value:.3g}{adjusted}")


def margin_p(drop: float, stderr: float, margin: float) -> float:
    """One-sided p-value of H0 "true drop <= margin" (normal approximation of the mean difference)."""
    if stderr <= 0:
        return 0.0 if drop > margin else 1.0
    return 1.0 - NormalDist().cdf((drop - margin) / stderr)


def decide(
    drop: float, stderr: float, margin: float, *, tier: Tier, confidence: float, interval: str,
    p_adjusted: float | None = None, correction: str | None = None,
) -> GateDecision:
    """GO / NO-GO / INCONCLUSIVE from the drop's two-sided `confidence` interval against `margin`;
    NO-GO reads the adjusted p when one is given (without one it is exactly `ci_low > margin`)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    low, high = drop - z * stderr, drop + z * stderr
    p = margin_p(drop, stderr, margin)
    decisive = p if p_adjusted is None else p_adjusted
    verdict: GateVerdict
    if decisive < (1 - confidence) / 2 and low > margin:
        verdict = "NO-GO"
    elif high <= margin:
        verdict = "GO"
    else:
        verdict = "INCONCLUSIVE"
    return GateDecision(verdict=verdict, tier=tier, margin=margin, drop=drop, stderr=stderr, ci_low=low, ci_high=high,
                        confidence=confidence, interval=interval, p_value=p, p_adjusted=p_adjusted,
                        correction=correction)


def readjust(decision: GateDecision, p_adjusted: float | None, correction: str | None) -> GateDecision:
    """The same comparison decided with another adjusted p."""
    return decide(decision.drop, decision.stderr, decision.margin, tier=decision.tier,
                  confidence=decision.confidence, interval=decision.interval, p_adjusted=p_adjusted,
                  correction=correction)


def in_family(tier: Tier, lenient: bool) -> bool:
    """The comparisons whose NO-GO fails the run: critical ones, and supporting ones unless lenient."""
    return tier == "critical" or (tier == "supporting" and not lenient)


def effect(decision: GateDecision, *, lenient: bool, inconclusive: InconclusivePolicy) -> Effect:
    """What the verdict does to the pytest outcome: a NO-GO fails a critical benchmark, and a supporting
    one unless `--nemo-gate-lenient` (then it warns); INCONCLUSIVE follows the suite's `inconclusive:`;
    an advisory benchmark only reports."""
    if decision.tier == "advisory" or decision.verdict == "GO":
        return "pass"
    if decision.verdict == "NO-GO":
        return "fail" if in_family(decision.tier, lenient) else "warn"
    return inconclusive


def adjust(p_values: Sequence[float], method: Correction) -> list[float]:
    """Adjusted p-values, in the input's order. Holm (step-down, FWER): p_(i) -> max_{j<=i} min(1,
    (m-j+1) p_(j)). Benjamini-Hochberg (step-up, FDR): p_(i) -> min_{j>=i} min(1, m p_(j) / j)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [0.0] * m
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p_values[i]))
            out[i] = running
    else:
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, m * p_values[i] / (rank + 1))
            out[i] = min(1.0, running)
    return out


def live_bound(p_value: float, family_size: int) -> float:
    """min(1, m p): an upper bound of both Holm's and BH's adjusted p (Holm's is max_{j<=i} (m-j+1)
    p_(j) <= m p_(i); BH's is min_{j>=i} m p_(j)/j <= m p_(i)). A benchmark decided while the run goes
    on, before the others' p-values exist, uses it: a NO-GO it gives is never reversed by the final
    adjustment (`nemo-eval-report` over the finished run), and the run's FWER stays at most alpha/2."""
    return min(1.0, max(1, family_size) * p_value)
