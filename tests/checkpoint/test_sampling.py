"""TokenSampler on known logits: temperature, top-k, top-p and seeds behave as documented."""

from __future__ import annotations

import math
from collections import Counter

import torch

from pytest_nemo_eval.serving.sampling import TokenSampler

LOGITS = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))


def _frequencies(sampler: TokenSampler, draws: int = 4000) -> list[float]:
    counts = Counter(sampler.choose(LOGITS) for _ in range(draws))
    return [counts[i] / draws for i in range(len(LOGITS))]


def test_temperature_one_samples_the_model_distribution():
    frequencies = _frequencies(TokenSampler(1.0, 1.0, 0, seed=0))
    assert all(abs(f - p) < 0.03 for f, p in zip(frequencies, [0.5, 0.3, 0.15, 0.05])), frequencies


def test_high_temperature_flattens_and_greedy_takes_the_best():
    assert _frequencies(TokenSampler(100.0, 1.0, 0, seed=0))[3] > 0.2
    assert TokenSampler(0.0, 1.0, 0, seed=None).choose(LOGITS) == 0


def test_top_k_and_top_p_cut_the_tail():
    assert _frequencies(TokenSampler(1.0, 1.0, 2, seed=1))[2:] == [0.0, 0.0]
    top_p = _frequencies(TokenSampler(1.0, 0.75, 0, seed=2))  # 0.5 + 0.3 reaches 0.75: two tokens stay
    assert top_p[2:] == [0.0, 0.0] and math.isclose(top_p[0] / top_p[1], 5 / 3, rel_tol=0.15)


def test_same_seed_same_draws_other_seed_other_draws():
    def draws(seed):
        sampler = TokenSampler(1.0, 1.0, 0, seed=seed)
        return [sampler.choose(LOGITS) for _ in range(50)]

    assert draws(42) == draws(42) and draws(42) != draws(43)
