"""Paired regression test of one metric: the same items scored by the baseline and the new run.

Two runs over the same items are strongly correlated (an easy item is easy for both), so the
noise of the *difference* is far smaller than the two runs' stderrs added up, which is all the
unpaired comparison (gate.compare_all) can use. As NeMo Evaluator's `nel gate`:
- 0/1 scores: exact one-sided McNemar test on the discordant items (scipy's binomtest);
- other scores, or items grouped in clusters: a seeded one-sided sign-flip permutation test of
  the mean difference (whole clusters flipped together);
- the difference with its interval, the items that flipped each way, and the minimum drop this
  benchmark could detect at 80% power; clustered standard errors (Miller 2024, "Adding Error
  Bars to Evals"; inspect_ai's `stderr(cluster=...)`) when the task names a cluster field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

MIN_PAIRED_ITEMS = 10  # below this no paired verdict (as nel gate)
POWER = 0.8
PERMUTATIONS = 10_000

Method = Literal["mcnemar", "permutation"]


class PairedTest(BaseModel):
    """The paired comparison of one metric; `drop` is positive when the new run is worse."""

    method: Method
    n: int
    baseline_mean: float
    current_mean: float
    drop: float
    drop_ci_low: float
    drop_ci_high: float
    stderr: float  # of the mean difference (clustered when clusters were given)
    p_value: float  # one-sided: the chance of a drop at least this large if nothing changed
    mde: float  # smallest true drop detected with 80% power at this alpha and n
    worse: list[str]  # item ids whose score got worse
    better: list[str]  # item ids whose score got better
    clusters: int | None = None

    def regressed(self, alpha: float, tolerance: float = 0.0) -> bool:
        return self.p_value < alpha and self.drop > tolerance

    def describe(self) -> str:
        clusters = f", {self.clusters} clusters" if self.clusters else ""
        return (f"paired {self.method} on {self.n} items{clusters}: drop {self.drop:+.4f} "
                f"[{self.drop_ci_low:+.4f}, {self.drop_ci_high:+.4f}], p={self.p_value:.4g}, "
                f"{len(self.worse)} worse / {len(self.better)} better, detectable drop {self.mde:.4f}")


def _is_binary(values: NDArray[np.float64]) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def clustered_stderr(diffs: NDArray[np.float64], clusters: Sequence[str] | None) -> float:
    """Standard error of the mean of `diffs`; with clusters, the cluster-robust (CR0) form
    sqrt(sum_c (sum_{i in c} (d_i - mean))^2) / n, which is larger when items of a cluster move together."""
    n = len(diffs)
    centred = diffs - diffs.mean()
    if clusters is None:
        return float(np.sqrt(np.sum(centred**2) / (n - 1) / n)) if n > 1 else 0.0
    sums: dict[str, float] = {}
    for cluster, value in zip(clusters, centred):
        sums[cluster] = sums.get(cluster, 0.0) + float(value)
    g = len(sums)
    correction = g / (g - 1) if g > 1 else 1.0
    return math.sqrt(correction * sum(s * s for s in sums.values())) / n


def _permutation_p(diffs: NDArray[np.float64], clusters: Sequence[str] | None, seed: int, permutations: int) -> float:
    """One-sided sign-flip permutation p-value of mean(diffs) > 0 (whole clusters flip together)."""
    if clusters is None:
        groups = diffs
    else:
        index: dict[str, int] = {}
        codes = np.array([index.setdefault(c, len(index)) for c in clusters])
        groups = np.bincount(codes, weights=diffs).astype(np.float64)
    observed = groups.sum()
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    chunk = max(1, 2_000_000 // max(1, len(groups)))
    while done < permutations:
        size = min(chunk, permutations - done)
        signs = rng.integers(0, 2, size=(size, len(groups)), dtype=np.int8) * 2 - 1
        hits += int(np.sum(signs @ groups >= observed - 1e-12))
        done += size
    return (hits + 1) / (permutations + 1)


def paired_test(
    baseline: dict[str, float],
    current: dict[str, float],
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    clusters: dict[str, str] | None = None,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
) -> PairedTest | None:
    """Compare the scores of the items both runs have; None when fewer than MIN_PAIRED_ITEMS."""
    from scipy.stats import binomtest

    ids = sorted(set(baseline) & set(current))
    if len(ids) < MIN_PAIRED_ITEMS:
        return None
    before = np.array([baseline[i] for i in ids], dtype=float)
    after = np.array([current[i] for i in ids], dtype=float)
    sign = 1.0 if higher_is_better else -1.0
    diffs = sign * (before - after)  # > 0: the item got worse
    cluster_of = [str(clusters.get(i, i)) for i in ids] if clusters else None
    se = clustered_stderr(diffs, cluster_of)
    worse = [i for i, d in zip(ids, diffs) if d > 0]
    better = [i for i, d in zip(ids, diffs) if d < 0]
    if cluster_of is None and _is_binary(before) and _is_binary(after):
        method: Method = "mcnemar"
        discordant = len(worse) + len(better)
        p = binomtest(len(worse), discordant, 0.5, alternative="greater").pvalue if discordant else 1.0
    else:
        method = "permutation"
        p = _permutation_p(diffs, cluster_of, seed, permutations) if np.any(diffs) else 1.0
    z = NormalDist().inv_cdf(1 - alpha / 2)
    drop = float(diffs.mean())
    mde = (NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(POWER)) * se
    if method == "mcnemar":  # with no discordant items se is 0; no drop below k/n is ever significant,
        mde = max(mde, math.ceil(math.log2(1 / alpha)) / len(ids))  # k = fewest all-worse flips with 0.5^k < alpha
    return PairedTest(
        method=method, n=len(ids), baseline_mean=float(before.mean()), current_mean=float(after.mean()),
        drop=drop, drop_ci_low=drop - z * se, drop_ci_high=drop + z * se, stderr=se, p_value=float(p),
        mde=float(mde), worse=worse, better=better,
        clusters=len(set(cluster_of)) if cluster_of is not None else None,
    )
