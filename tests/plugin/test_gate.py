"""Threshold, confidence-interval and baseline rules (pure functions, no servers)."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from pytest_nemo_eval.gate import (
    ScoreValue,
    UnknownMetricError,
    check_metric,
    compare_to_baseline,
    evaluate,
    name_scores,
    z_value,
)
from pytest_nemo_eval.suite import Threshold

MIN_HALF = Threshold(min=0.5)


def test_plain_mode_compares_the_value():
    assert check_metric("acc", ScoreValue(value=0.5), MIN_HALF).verdict == "pass"
    failed = check_metric("acc", ScoreValue(value=0.42, stderr=0.01), MIN_HALF)
    assert failed.verdict == "fail" and failed.miss == pytest.approx(0.08)
    assert check_metric("err", ScoreValue(value=0.2), Threshold(max=0.1)).verdict == "fail"


@pytest.mark.parametrize(
    "value, stderr, verdict",
    [
        (0.60, 0.02, "pass"),  # CI [0.561, 0.639] above 0.5
        (0.40, 0.02, "fail"),  # CI [0.361, 0.439] below 0.5
        (0.52, 0.05, "inconclusive"),  # CI [0.422, 0.618] straddles 0.5
        (0.48, 0.05, "inconclusive"),  # below the threshold but the CI reaches above it
    ],
)
def test_confidence_mode_fails_only_when_the_whole_interval_misses(value, stderr, verdict):
    result = check_metric("acc", ScoreValue(value=value, stderr=stderr), MIN_HALF, confidence=0.95)
    assert result.verdict == verdict
    assert result.ci_low == pytest.approx(value - 1.959964 * stderr, abs=1e-5)


def test_inconclusive_policy_decides_the_outcome():
    scores = {"acc": ScoreValue(value=0.52, stderr=0.05)}
    outcomes = {
        policy: evaluate(scores, {"acc": MIN_HALF}, confidence=0.95, inconclusive=policy).outcome
        for policy in ("fail", "warn", "pass")
    }
    assert outcomes == {"fail": "fail", "warn": "warn", "pass": "pass"}


def test_failure_message_lists_every_metric_with_stderr_threshold_and_miss():
    scores = {"acc": ScoreValue(value=0.42, stderr=0.0123), "f1": ScoreValue(value=0.9)}
    gate = evaluate(scores, {"acc": MIN_HALF, "f1": Threshold(min=0.8, max=0.95)})
    message = gate.message("mmlu")
    assert gate.outcome == "fail"
    assert "benchmark 'mmlu': 1 failed, 0 inconclusive" in message
    assert "acc = 0.4200 ± 0.0123 threshold >= 0.5: FAIL, missed by 0.0800" in message
    assert "f1 = 0.9000 threshold [0.8, 0.95]: PASS" in message


def test_unknown_metric_names_the_produced_ones():
    with pytest.raises(UnknownMetricError, match=r"'accuracy'.*Metrics it produced: acc, acc_norm"):
        evaluate({"acc": ScoreValue(value=1), "acc_norm": ScoreValue(value=1)}, {"accuracy": MIN_HALF})


def test_metric_names_short_and_full():
    flat = {
        "mmlu.acc.acc": ScoreValue(value=0.6),
        "mmlu_math.acc.acc": ScoreValue(value=0.3),
        "gsm8k.exact_match.strict": ScoreValue(value=0.1),
        "gsm8k.exact_match.flexible": ScoreValue(value=0.2),
    }
    names = name_scores(flat, "mmlu")
    assert names["acc"].value == 0.6 and names["acc.acc"].value == 0.6
    assert names["mmlu_math.acc.acc"].value == 0.3
    gsm = name_scores(flat, "lm-evaluation-harness.gsm8k")
    assert gsm["exact_match.strict"].value == 0.1 and "exact_match" not in gsm  # two scores: ambiguous


def test_baseline_regression_beyond_tolerance_and_noise():
    base = {"acc": ScoreValue(value=0.70, stderr=0.01)}
    noise = z_value(0.95) * (0.01**2 * 2) ** 0.5  # ~0.0277
    assert compare_to_baseline("b", {"acc": ScoreValue(value=0.68, stderr=0.01)}, base) == []
    (regression,) = compare_to_baseline("b", {"acc": ScoreValue(value=0.60, stderr=0.01)}, base)
    assert regression.allowed == pytest.approx(noise)
    assert compare_to_baseline("b", {"acc": ScoreValue(value=0.60, stderr=0.01)}, base, tolerance=0.08) == []
    assert compare_to_baseline("b", {"acc": ScoreValue(value=0.69)}, {"acc": ScoreValue(value=0.70)}) != []
    lower = compare_to_baseline("b", {"err": ScoreValue(value=0.3)}, {"err": ScoreValue(value=0.1)}, lower_is_better=["err"])
    assert [r.metric for r in lower] == ["err"]


def wilson(k: int, n: int, z: float = NormalDist().inv_cdf(0.975)) -> tuple[float, float]:
    """Wilson (1927) score interval, written out from the textbook formula as the oracle."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n, sample_stderr", [(10, 10, True), (9, 10, True), (9, 10, False), (0, 25, True), (37, 50, True)])
def test_a_proportion_gets_the_wilson_interval_inside_zero_and_one(k, n, sample_stderr):
    p = k / n
    stderr = math.sqrt(p * (1 - p) / (n - 1 if sample_stderr else n))
    result = check_metric("acc", ScoreValue(value=p, stderr=stderr, count=n), MIN_HALF, confidence=0.95)
    low, high = wilson(k, n)
    assert (result.ci_low, result.ci_high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert 0.0 <= result.ci_low <= p <= result.ci_high <= 1.0 and result.ci_method == "Wilson"


def test_ten_of_ten_is_not_certain_at_ninety_five():
    """value ± z·stderr is [1, 1] here and would pass `min: 0.95` conclusively; Wilson's reaches 0.72."""
    result = check_metric("acc", ScoreValue(value=1.0, stderr=0.0, count=10), Threshold(min=0.95), confidence=0.95)
    assert result.verdict == "inconclusive" and result.ci_low == pytest.approx(wilson(10, 10)[0])
    assert "(CI [0.7225, 1.0000], Wilson)" in result.describe()


@pytest.mark.parametrize("score", [
    ScoreValue(value=3.2, stderr=0.4, count=10),  # not a proportion (a mean rating)
    ScoreValue(value=0.5, stderr=0.05, count=10),  # in [0, 1], but a mean of graded scores: stderr not binomial
    ScoreValue(value=0.55, stderr=0.16, count=10),  # 5.5 successes of 10 is not a count
    ScoreValue(value=0.6, stderr=0.1),  # no count reported
])
def test_other_scores_keep_the_normal_interval(score):
    result = check_metric("m", score, MIN_HALF, confidence=0.95)
    assert result.ci_method == "normal"
    assert result.ci_low == pytest.approx(score.value - 1.959964 * (score.stderr or 0), abs=1e-5)
