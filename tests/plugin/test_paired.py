"""The paired regression test on simulated runs with fixed seeds (no servers): it finds a true
drop the unpaired comparison misses at the same n, under no change it raises a false alarm no
more often than its level, and at the minimum detectable drop it reports it detects about 80% of
the time. The code computes McNemar's p-value with scipy's binomtest; the oracles here are the
binomial probabilities written out (P(X >= k) as sums of C(n, i) / 2^n) and counting over
simulated runs."""

from __future__ import annotations

import math

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


def test_at_the_reported_detectable_drop_the_test_detects_about_80_percent():
    """`mde` claims 80% power. Runs with no change and 10% discordant items report an mde; runs of the same
    discordance whose true drop is that mde are then flagged about 80% of the time (the exact McNemar test is a
    little conservative: 0.77 measured at 1,000 trials), and at half of it far less often."""
    rng = np.random.default_rng(29)
    discordant = 0.10  # each item flips (either way) with this chance; the drop moves the balance between ways

    def runs(drop: float):  # P(worse) - P(better) = drop, P(worse) + P(better) = discordant
        return _runs(rng, N, lose=(discordant + drop) / 2 / 0.7, gain=(discordant - drop) / 2 / 0.3)

    mde = float(np.median([paired_test(*runs(0.0), alpha=ALPHA).mde for _ in range(100)]))

    def power(drop: float, trials: int) -> float:
        return sum(paired_test(*runs(drop), alpha=ALPHA).regressed(ALPHA) for _ in range(trials)) / trials

    at_mde = power(mde, 1000)
    print(f"mde {mde:.4f} at n={N}: detected {at_mde:.3f} at the mde")
    assert 0.72 <= at_mde <= 0.88, (mde, at_mde)
    assert power(mde / 2, 300) <= 0.5, mde


@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_with_no_flips_the_detectable_drop_is_the_fewest_all_worse_flips_that_are_significant(alpha):
    """With no discordant item the stderr is 0 and the normal formula says 0; McNemar needs k all-worse flips
    with 0.5^k < alpha before any drop is significant (commit 8bea958), so the floor is k/n."""
    rng = np.random.default_rng(3)
    ids = [str(i) for i in range(N)]
    base = dict(zip(ids, (rng.random(N) < 0.7).astype(float)))
    same = paired_test(base, dict(base), alpha=alpha)
    assert same.stderr == 0 and same.worse == [] and same.better == []
    k = round(same.mde * N)
    assert same.mde == pytest.approx(k / N) and k > 0
    right = [i for i in ids if base[i] == 1]
    for flips, significant in ((k, True), (k - 1, False)):
        after = {**base, **{i: 0.0 for i in right[:flips]}}
        test = paired_test(base, after, alpha=alpha)
        assert test.p_value == pytest.approx(0.5**flips)  # P(X >= f) for X ~ Binomial(f, 1/2)
        assert test.regressed(alpha) is significant, (alpha, flips, test.p_value)
    assert k == math.ceil(math.log2(1 / alpha))


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
