"""Batched text generation with exact logprobs on a megatron-core GPTModel.

One `generate` call runs one batch: prompts are left-padded to a common length
and run through the model once (prefill), then one token per step is decoded
with megatron-core's StaticInferenceContext KV cache (it runs on CPU with the
checkpoint.cpu_compat shims). Padding is masked out of attention, so each row
equals the same request run alone (RoPE depends only on relative positions;
learned absolute positions are given per row).

Logprobs are log-softmax of the model's raw logits over the tokenizer's real
vocabulary (the padded tail of the embedding table is excluded), before any
temperature or top-k/top-p processing; they equal a direct forward pass.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, Field

from .sampling import TokenSampler

MAX_TOP_LOGPROBS = 20


class GenerationRequest(BaseModel):
    prompt_ids: list[int]
    max_tokens: int = Field(16, ge=0)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False


class TokenLogprob(BaseModel):
    token_id: int
    token: str
    logprob: float
    top: dict[str, float]


class GenerationResult(BaseModel):
    output_ids: list[int]
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_logprobs: list[TokenLogprob | None] | None = None
    output_logprobs: list[TokenLogprob] | None = None


class _Row:
    """Decoding state of one request in the batch."""

    def __init__(self, request: GenerationRequest, pad: int) -> None:
        self.request, self.pad = request, pad
        self.sampler = TokenSampler(request.temperature, request.top_p, request.top_k, request.seed)
        self.output_ids: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.finish_reason: Literal["stop", "length"] | None = None if request.max_tokens > 0 else "length"
        self.text = ""

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class GenerationEngine:
    """Generates for a batch of tokenized requests; `generate` is thread-safe (one batch at a time)."""

    def __init__(self, checkpoint) -> None:
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.model_id: str = checkpoint.model_id
        self.max_context: int = checkpoint.config.seq_length
        self.device: torch.device = checkpoint.device
        self.vocab_size: int = self.tokenizer.vocab_size
        self._absolute_positions = checkpoint.config.position_embedding_type == "learned_absolute"
        self._lock = threading.Lock()

    # -- validation ---------------------------------------------------------
    def validate(self, request: GenerationRequest) -> None:
        """ValueError (an HTTP 400 upstream) for a request this model cannot serve."""
        if not request.prompt_ids:
            raise ValueError("The prompt is empty; send at least one token of text.")
        bad = [t for t in request.prompt_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"Prompt token id(s) {bad[:5]} are outside this model's vocabulary of {self.vocab_size}.")
        needed = len(request.prompt_ids) + request.max_tokens
        if needed > self.max_context:
            raise ValueError(
                f"The prompt ({len(request.prompt_ids)} tokens) plus max_tokens ({request.max_tokens}) is {needed} "
                f"tokens, more than this model's context of {self.max_context}; shorten the prompt or lower max_tokens."
            )

    # -- the public call ----------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        for request in requests:
            self.validate(request)
        if not requests:
            return []
        with self._lock, torch.inference_mode():
            return self._generate(requests)

    def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        from megatron.core.inference.contexts import StaticInferenceContext

        width = max(len(r.prompt_ids) for r in requests)
        steps = max(r.max_tokens for r in requests)
        rows = [_Row(r, width - len(r.prompt_ids)) for r in requests]
        tokens = torch.full((len(rows), width), self.tokenizer.eos_id, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, row.pad:] = torch.tensor(row.request.prompt_ids)
        total = width + steps
        key_valid = torch.arange(total)[None, :] >= torch.tensor([row.pad for row in rows])[:, None]
        context = StaticInferenceContext(len(rows), total)
        context.materialize_only_last_token_logits = not any(r.echo for r in requests)

        logits = self._forward(tokens, 0, key_valid, context)
        prompt_logprobs = [
            self._prompt_logprobs(row, logits[i]) if row.request.echo else None for i, row in enumerate(rows)
        ]
        last = logits[:, -1]
        for step in range(steps):
            next_ids = [self._advance(row, last[i]) for i, row in enumerate(rows)]
            if all(row.done for row in rows):
                break
            context.enable_decode_mode()
            last = self._forward(torch.tensor(next_ids)[:, None], width + step, key_valid, context)[:, -1]
        return [self._result(row, prompt_logprobs[i]) for i, row in enumerate(rows)]

    # -- model --------------------------------------------------------------
    def _forward(self, tokens: torch.Tensor, start: int, key_valid: torch.Tensor, context) -> torch.Tensor:
        """fp32 logits over the real vocabulary for `tokens` placed at positions start.. of the cache."""
        batch, length = tokens.shape
        end = start + length
        query = torch.arange(start, end)[:, None]
        keys = torch.arange(end)[None, :]
        mask = (keys > query)[None, None] | ~key_valid[:, None, None, :end]
        positions = torch.arange(start, end)[None, :].expand(batch, -1)
        if self._absolute_positions:
            pads = (~key_valid[:, :end]).sum(dim=1, keepdim=True)
            positions = (positions - pads).clamp(min=0)
        logits = self.model(
            tokens.to(self.device), positions.to(self.device), mask.to(self.device),
            inference_context=context, runtime_gather_output=True,
        )
        context.sequence_len_offset += length
        return logits[..., : self.vocab_size].float().cpu()

    # -- per-row bookkeeping -------------------------------------------------
    def _token_logprob(self, log_probs: torch.Tensor, token_id: int, top: int | None) -> TokenLogprob:
        alternatives: dict[str, float] = {}
        if top:
            values, ids = torch.topk(log_probs, min(top, log_probs.numel()))
            alternatives = {self.tokenizer.token_str(int(t)): float(v) for v, t in zip(values, ids)}
        return TokenLogprob(
            token_id=token_id, token=self.tokenizer.token_str(token_id), logprob=float(log_probs[token_id]),
            top=alternatives,
        )

    def _prompt_logprobs(self, row: _Row, logits: torch.Tensor) -> list[TokenLogprob | None]:
        """Logprob of each prompt token given the ones before it; the first has none."""
        ids = row.request.prompt_ids
        log_probs = torch.log_softmax(logits[row.pad : row.pad + len(ids) - 1], dim=-1)
        return [None] + [
            self._token_logprob(log_probs[j], ids[j + 1], row.request.logprobs) for j in range(len(ids) - 1)
        ]

    def _advance(self, row: _Row, logits: torch.Tensor) -> int:
        """Choose this row's next token and update its finish state; returns the token to feed next."""
        if row.done:
            return self.tokenizer.eos_id
        token = row.sampler.choose(logits)
        if token == self.tokenizer.eos_id:
            row.finish_reason = "stop"
            return token
        row.output_ids.append(token)
        if row.request.logprobs is not None:
            row.logprobs.append(self._token_logprob(torch.log_softmax(logits, dim=-1), token, row.request.logprobs))
        row.text = self.tokenizer.decode(row.output_ids)
        if row.request.stop and self._cut_at_stop(row):
            row.finish_reason = "stop"
        elif len(row.output_ids) >= row.request.max_tokens:
            row.finish_reason = "length"
        return token

    def _cut_at_stop(self, row: _Row) -> bool:
        """Truncate the output before the earliest stop string; True when one occurred."""
        hits = [index for stop in row.request.stop if stop and (index := row.text.find(stop)) >= 0]
        if not hits:
            return False
        cut = min(hits)
        keep = len(row.output_ids)
        while keep > 0 and len(self.tokenizer.decode(row.output_ids[:keep])) > cut:
            keep -= 1
        row.output_ids, row.logprobs = row.output_ids[:keep], row.logprobs[:keep]
        row.text = row.text[:cut]
        return True

    def _result(self, row: _Row, prompt_logprobs) -> GenerationResult:
        return GenerationResult(
            output_ids=row.output_ids, text=row.text, finish_reason=row.finish_reason or "length",
            prompt_logprobs=prompt_logprobs,
            output_logprobs=row.logprobs if row.request.logprobs is not None else None,
        )


def load_engine(checkpoint_path: str | Path, device=None, **load_options) -> GenerationEngine:
    """Load a NeMo 2.0 checkpoint and wrap it in a GenerationEngine."""
    from pytest_nemo_eval.checkpoint.loader import load_checkpoint

    return GenerationEngine(load_checkpoint(checkpoint_path, device=device, **load_options))
