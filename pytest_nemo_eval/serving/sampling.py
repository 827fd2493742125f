"""Choosing the next token of one sequence: greedy, or temperature / top-k / top-p sampling.

Each request owns its own torch.Generator, so a seeded request draws the same
tokens whatever else shares its batch.
"""

from __future__ import annotations

import torch


class TokenSampler:
    """Next-token choice for one request; `temperature == 0` is greedy (argmax)."""

    def __init__(self, temperature: float, top_p: float, top_k: int, seed: int | None) -> None:
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.generator: torch.Generator | None = None
        if temperature > 0:
            self.generator = torch.Generator(device="cpu")
            if seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(seed)

    def choose(self, logits: torch.Tensor) -> int:
        """The next token id from one row of fp32 logits over the real vocabulary."""
        if self.generator is None:
            return int(torch.argmax(logits).item())
        scores = logits.float().cpu() / self.temperature
        if self.top_k > 0 and self.top_k < scores.numel():
            kth = torch.topk(scores, self.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=True)
            cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
            # keep the smallest prefix whose mass reaches top_p (the first token always stays)
            drop = cumulative - torch.softmax(sorted_scores, dim=-1) >= self.top_p
            scores = scores.scatter(0, order[drop], float("-inf"))
        probabilities = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probabilities, 1, generator=self.generator).item())
