"""The paired regression test on simulated runs with fixed seeds (no servers): it finds a true
drop the unpaired comparison misses at the same n, and under no change it raises a false alarm
no more often than its level. The oracles are scipy's binomial test and plain counting."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_nemo_eval.gate import ScoreValue, compare_all
from pytest_nemo_eval.paired import clustered_stderr, paired_test

ALPHA = 0.05
N = 200


def _runs(rng, n: int, lose: float, gain: float) -> tuple[dict[str, float], dict[str, float]]:
    """0/1 scores of a baseline (70% right) and a new run in which a right item turns wrong
    with probability `lose` and a wrong one right with probability `gain`."""
    before = (rng.random(n) < 0.7).astype(float)
    flip = rng.random(n)
    after = np.where(before == 1, (flip >= lose).astype(float), (flip < gain).astype(float))
    ids = [f"item-{i}" for i in range(n)]
    return dict(zip(ids, before)), dict(zip(ids, after))


def _unpaired_regressed(before: dict[str, float], after: dict[str, float]) -> bool:
    def score(values: dict[str, float]) -> ScoreValue:
        v = np.array(list(values.values()))
        return ScoreValue(value=float(v.mean()), stderr=float(v.std(ddof=1) / np.sqrt(len(v))))

    (comparison,) = compare_all("b", {"acc": score(after)}, {"acc": score(before)}, confidence=1 - ALPHA)
    return comparison.regressed


def test_paired_detects_a_true_drop_the_unpaired_comparison_misses():
    """A true drop of ~0.064 (10% of right answers lost, 2% of wrong ones gained) at n=200."""
    rng = np.random.default_rng(20240611)
    paired_hits = unpaired_hits = 0
    trials = 200
    for _ in range(trials):
        before, after = _runs(rng, N, lose=0.10, gain=0.02)
        test = paired_test(before, after, alpha=ALPHA)
        assert test is not None and test.method == "mcnemar"
        paired_hits += test.regressed(ALPHA)
        unpaired_hits += _unpaired_regressed(before, after)
    assert paired_hits / trials >= 0.9, paired_hits
    assert unpaired_hits / trials <= 0.4, unpaired_hits


def test_mcnemar_p_value_flips_and_interval():
    ids = [str(i) for i in range(30)]
    before = {i: 1.0 for i in ids}
    after = {i: (0.0 if int(i) < 6 else 1.0) for i in ids}
    after["29"] = 1.0
    before["29"] = 0.0  # one item got better
    test = paired_test(before, after, alpha=ALPHA)
    assert test.worse == ["0", "1", "2", "3", "4", "5"] and test.better == ["29"]
    assert test.p_value == pytest.approx(8 / 128)  # P(X >= 6) = (C(7,6) + C(7,7)) / 2^7, X ~ Binomial(7, 1/2)
    assert test.drop == pytest.approx(5 / 30)
    assert test.drop_ci_low < test.drop < test.drop_ci_high
    assert test.mde > 0


def test_false_alarm_rate_under_no_change_stays_below_alpha():
    """Items flip both ways at the same expected count (0.7*0.03 = 0.3*0.07): no true change."""
    rng = np.random.default_rng(7)
    trials = 1000
    alarms = sum(paired_test(*_runs(rng, N, lose=0.03, gain=0.07), alpha=ALPHA).regressed(ALPHA)
                 for _ in range(trials))
    assert alarms / trials <= ALPHA, alarms


def test_permutation_for_graded_scores_false_alarms_and_power():
    rng = np.random.default_rng(11)
    ids = [str(i) for i in range(60)]
    alarms = 0
    trials = 1000
    for _ in range(trials):
        base = rng.random(60)
        now = base + rng.normal(0, 0.05, 60)  # graded scores, no true change
        test = paired_test(dict(zip(ids, base)), dict(zip(ids, now)), alpha=ALPHA, seed=1, permutations=999)
        assert test.method == "permutation"
        alarms += test.regressed(ALPHA)
    assert alarms / trials <= ALPHA, alarms
    base = rng.random(60)
    worse = paired_test(dict(zip(ids, base)), dict(zip(ids, base - 0.03 + rng.normal(0, 0.02, 60))), seed=1)
    assert worse.regressed(ALPHA) and worse.drop == pytest.approx(0.03, abs=0.01)
    noisy = dict(zip(ids, base + rng.normal(0, 0.05, 60)))
    first = paired_test(dict(zip(ids, base)), noisy, seed=3, permutations=999)
    assert first.p_value == paired_test(dict(zip(ids, base)), noisy, seed=3, permutations=999).p_value  # seeded


def test_clustered_stderr_grows_when_a_cluster_moves_together():
    diffs = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0])
    together = ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3
    apart = [str(i) for i in range(12)]
    assert clustered_stderr(diffs, together) > clustered_stderr(diffs, apart)
    ids = [str(i) for i in range(12)]
    test = paired_test(dict(zip(ids, [1.0] * 12)), dict(zip(ids, 1.0 - np.clip(diffs, 0, 1))),
                       clusters=dict(zip(ids, together)), permutations=999)
    assert test.method == "permutation" and test.clusters == 4


def test_too_few_shared_items_gives_no_paired_verdict():
    assert paired_test({str(i): 1.0 for i in range(9)}, {str(i): 0.0 for i in range(9)}) is None
