"""The betting confidence sequence (confseq.py) against Waudby-Smith & Ramdas's formulas written out here,
its anytime coverage by a seeded simulation, and its width against the fixed-n Wilson interval (scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from pytest_nemo_eval.confseq import BettingCS


def _capital(xs: list[float], m: float, alpha: float = 0.05, c: float = 0.5) -> tuple[float, float]:
    """K+_t(m), K-_t(m) by the paper's recursion, one sample at a time, in plain Python."""
    k_plus = k_minus = 1.0
    total = squares = 0.0
    for t, x in enumerate(xs, 1):
        s2_prev = (0.25 + squares) / t
        bet = math.sqrt(2 * math.log(2 / alpha) / (s2_prev * t * math.log(1 + t)))
        k_plus *= 1 + min(bet, c / m) * (x - m)
        k_minus *= 1 - min(bet, c / (1 - m)) * (x - m)
        total += x
        squares += (x - (0.5 + total) / (t + 1)) ** 2
    return k_plus, k_minus


def test_capital_is_the_papers_recursion():
    rng = np.random.default_rng(1)
    xs = list(rng.uniform(0, 1, 60) ** 2)  # bounded, not 0/1: the sequence is for any [0, 1] outcome
    cs = BettingCS(0.05, extra_points=[0.3, 0.7])
    for x in xs:
        cs.update(x)
    for m in (0.3, 0.7):
        k_plus, k_minus = _capital(xs, m)
        i = int(np.flatnonzero(np.isclose(cs.m, m))[0])
        assert cs.log_plus[0, i] == pytest.approx(math.log(k_plus), rel=1e-9)
        assert cs.log_minus[0, i] == pytest.approx(math.log(k_minus), rel=1e-9)
        hedged = max(0.5 * k_plus, 0.5 * k_minus)
        assert bool(cs.excluded[0, i]) == (hedged >= 20)  # 1/alpha; 60 samples far from 0.3 and 0.7


def test_covers_the_mean_at_every_time_at_once():
    """300 streams of 300 Bernoulli samples, means spread over [0.05, 0.95]: the share of streams whose
    sequence ever excluded the true mean is at most alpha (here with the binomial slack of 300 streams)."""
    rng = np.random.default_rng(2)
    mus = rng.uniform(0.05, 0.95, 300)
    cs = BettingCS(0.05, batch=300, extra_points=mus, grid_points=8)
    ever_missed = np.zeros(300, dtype=bool)
    column = np.searchsorted(cs.m, mus)
    for _ in range(300):
        cs.update(rng.random(300) < mus)
        ever_missed |= cs.excluded[np.arange(300), column]
    assert ever_missed.mean() <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 300)
    low, high = cs.interval(0)
    assert low < mus[0] < high or ever_missed[0]


def test_wider_than_the_fixed_n_interval_and_decides_clear_cases():
    rng = np.random.default_rng(3)
    xs = rng.random(500) < 0.8
    cs = BettingCS(0.05, extra_points=[0.5])
    stopped = None
    for t, x in enumerate(xs, 1):
        cs.update(x)
        if stopped is None and cs.decision(0.5) is not None:
            stopped = (t, cs.decision(0.5))
    low, high = cs.interval()
    wilson = binomtest(int(xs.sum()), 500).proportion_ci(0.95, method="wilson")
    assert low <= wilson.low and high >= wilson.high  # the price of looking after every sample
    assert low <= xs.mean() <= high
    assert stopped is not None and stopped[1] == "pass" and stopped[0] < 150
    assert cs.decision(0.9) == "fail" and cs.decision(None, 0.5) == "fail"
