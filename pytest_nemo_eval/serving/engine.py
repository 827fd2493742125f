"""Continuous (in-flight) batched generation with exact logprobs on a megatron-core GPTModel.

Requests are not grouped into fixed batches. One scheduler thread runs one
decode step at a time for every active request and, between steps, admits
waiting requests (their prompts prefilled together in one forward) and retires
finished ones. A request that arrives mid-decode joins the running batch at the
next step instead of waiting for the batch to end: that keeps the batch full
when many clients send at staggered times. Fixed batches measured 5-6 rows of 16
at 16 clients; see benchmarks/bench_serving.py.

KV cache: one megatron-core StaticInferenceContext of `slots` rows over a shared
timeline of positions. Every decode step writes position `cur` of every row. A
request admitted at `cur` has its prompt's keys/values placed at [cur-L, cur) of
its slot, so its own positions stay contiguous. megatron-core caches keys before
RoPE and rotates them by timeline position when reading, and RoPE depends only
on relative positions, so a row computes exactly what the same request computes
alone (learned absolute positions are passed per row). Everything before a
row's start is masked out. When the timeline has no room for the next request,
admission pauses until the active rows finish; then the timeline starts again at 0.
A decode step attends over [0, cur], so under steady load (the timeline never
empties) that span would grow to the whole context: once the oldest active row
starts past half of `cur`, every row's keys/values are moved down by that start
(compaction; relative positions, hence results, are unchanged), keeping the span
near the live rows' own lengths (benchmarks/bench_demo_context.py).

Logprobs are log-softmax of the model's raw logits over the tokenizer's real
vocabulary (the padded tail of the embedding table is excluded), before any
temperature or top-k/top-p processing and before a structured-output mask; they
equal a direct forward pass (a constrained request's logprobs and top
alternatives are the model's own, so they may name tokens its grammar forbade).

Structured outputs (`request.structured`: JSON schema, regex, choice, grammar) are
compiled by the grammar engine (serving/structured_output.py, llguidance) when the
request is validated, so a constraint it cannot compile is a ValueError (HTTP 400)
before the request queues. At each step the tokens the request's grammar forbids
get -inf logits before the sampler chooses (greedy or sampled alike); the mask is
per row, the forward pass is shared with unconstrained rows, which decode exactly
as they would alone. A request whose grammar is complete ends with finish_reason
"stop" at once (no EOS token is generated for it); choosing an EOS the grammar
allows ends it too. max_tokens can still cut a constrained output ("length"), and
a row whose grammar allows no token of the vocabulary fails alone.

End of sequence, as vLLM does it: the EOS token a request ends on is a generated
token. It is in `output_ids`, has its logprob entry and counts toward max_tokens
and usage; only `text` leaves it out (special tokens are not text). lm-eval's
loglikelihood scoring relies on that entry (it drops the last one as "the
generated token").

Streaming: `submit(..., on_delta=fn)` calls `fn(GenerationDelta)` from the
scheduler thread as tokens are chosen. A delta's text never has to be taken
back: text that may still turn into a stop string (a suffix that starts one) or
an incomplete character is held until it is settled, so the deltas joined equal
the final result. `cancel(request_id)` retires a request at the next step and
frees its slot (a streaming client that went away).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable, Literal

import torch
from pydantic import BaseModel, computed_field

from .generation import (  # noqa: F401 - re-exported: the engine's request/result types
    MAX_TOP_LOGPROBS,
    GenerationDelta,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
    merge_deltas,
)
from .sampling import TokenSampler
from .structured_output import ConstrainedDecoding, compile_constraint

LOGGER = logging.getLogger(__name__)


class EngineStats(BaseModel):
    """How full the running batch was: `mean_active_rows` near `slots` means batching works."""

    slots: int
    decode_steps: int = 0
    decoded_rows: int = 0  # sum over decode steps of the rows decoded together
    prefills: int = 0
    prefilled_rows: int = 0
    timeline_restarts: int = 0
    timeline_compactions: int = 0
    cancelled: int = 0  # requests retired by cancel() before they finished
    active_rows: int = 0  # requests decoding now

    @computed_field
    @property
    def mean_active_rows(self) -> float:
        return round(self.decoded_rows / self.decode_steps, 2) if self.decode_steps else 0.0


class EngineClosed(RuntimeError):
    """The engine stopped before this request finished."""


class RequestCancelled(RuntimeError):
    """cancel() retired this request before it finished."""


class _Row:
    """Decoding state of one request, from admission to its result."""

    def __init__(self, request: GenerationRequest, on_delta: Callable[[GenerationDelta], None] | None = None,
                 constraint: ConstrainedDecoding | None = None) -> None:
        self.request = request
        self.constraint = constraint  # the grammar of a structured output, masking every step
        self.on_delta = on_delta
        self.sent_ids = 0  # streaming: tokens already handed to on_delta
        self.sent_chars = 0  # and characters of text
        self.sent_any = False
        self.cancelled = False
        self.sampler = TokenSampler(request.temperature, request.top_p, request.top_k, request.seed)
        self.output_ids: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self.finish_reason: Literal["stop", "length"] | None = None if request.max_tokens > 0 else "length"
        self.text = ""
        self.slot: int | None = None  # its row of the KV cache while it decodes
        self.start = 0  # the timeline position of its first prompt token
        self.next_token = 0  # the token to feed at the next decode step
        self.future: Future[GenerationResult] = Future()

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class GenerationEngine:
    """Generates for tokenized requests; `generate` is thread-safe and may be called from many threads at once."""

    def __init__(self, checkpoint, *, slots: int = 16, timeline: int | None = None, admit_every: int = 4) -> None:
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.model_id: str = checkpoint.model_id
        self.max_context: int = checkpoint.config.seq_length
        self.device: torch.device = checkpoint.device
        self.vocab_size: int = self.tokenizer.vocab_size
        self.slots = slots
        self.admit_every = admit_every
        self.timeline = timeline or self.max_context
        if self.timeline < self.max_context:
            raise ValueError(f"timeline={self.timeline} is shorter than the model's context of {self.max_context}.")
        self._cond = threading.Condition()
        self._waiting: deque[_Row] = deque()
        self._live: dict[str, _Row] = {}  # unfinished rows by request_id, for cancel()
        self._active: dict[int, _Row] = {}  # slot -> row; only the scheduler thread changes it
        self._cur = 0  # the next timeline position a decode step writes
        self._steps_since_admission = 0
        self._cache = self._allocate_kv_cache()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._stats = EngineStats(slots=slots)

    # -- the public calls -----------------------------------------------------
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
        if request.structured is not None:
            compile_constraint(request.structured, self.tokenizer)  # StructuredOutputError; cached for submit

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Results in request order; blocks until every one is done (they join the running batch)."""
        return [future.result() for future in self.submit(requests)]

    def submit(self, requests: list[GenerationRequest], *,
               on_delta: Callable[[GenerationDelta], None] | None = None) -> list[Future[GenerationResult]]:
        """Queue the requests and return at once; each future ends with its result or the error that failed it.
        With `on_delta` (one request at a time), it is called from the scheduler thread with each new
        piece of the answer as it is decoded; it must not block."""
        for request in requests:
            self.validate(request)
        if on_delta is not None and len(requests) != 1:
            raise ValueError("Streaming (on_delta) takes one request per submit call.")
        rows = [_Row(request, on_delta, self._constraint(request)) for request in requests]
        with self._cond:
            if self._closed:
                raise EngineClosed("The generation engine is closed.")
            if self._thread is None:
                self._thread = threading.Thread(target=self._schedule, name="nemo-eval-engine", daemon=True)
                self._thread.start()
            self._waiting.extend(rows)
            for row in rows:
                if row.request.request_id is not None:
                    self._live[row.request.request_id] = row
                    row.future.add_done_callback(lambda _, row=row: self._forget(row))
            self._cond.notify()
        return [row.future for row in rows]

    @property
    def alive(self) -> bool:
        """False once closed or when the scheduler thread died: health checks fail (Serve replaces the replica)."""
        with self._cond:
            return not self._closed and (self._thread is None or self._thread.is_alive())

    def stats(self) -> EngineStats:
        return self._stats.model_copy(update={"active_rows": len(self._active)})

    def cancel(self, request_id: str) -> bool:
        """Retire the request named `request_id`: a waiting one at once, a decoding one before the next
        decode step (its slot is free for the next admission). Its future fails with RequestCancelled.
        False when no unfinished request has that id."""
        with self._cond:
            row = self._live.get(request_id)
            found = row is not None and not row.future.done()
            if found:
                row.cancelled = True  # a row being prefilled or decoding is retired by the scheduler
            waiting = [row for row in self._waiting if row.cancelled]
            for row in waiting:
                self._waiting.remove(row)
            self._stats.cancelled += len(waiting)
        self._fail(waiting, RequestCancelled(f"Request {request_id} was cancelled."))
        return found

    def close(self) -> None:
        """Stop the scheduler; requests not finished yet fail with EngineClosed. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _constraint(self, request: GenerationRequest) -> ConstrainedDecoding | None:
        if request.structured is None:
            return None
        return ConstrainedDecoding(compile_constraint(request.structured, self.tokenizer))

    # -- the scheduler thread -------------------------------------------------
    def _schedule(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._active or self._closed):
                    self._cond.wait()
                if self._closed:
                    break
                self._compact_timeline()
                admitted = self._admit() if self._admission_due() else []
            try:
                with torch.inference_mode():
                    if admitted:
                        self._prefill(admitted)
                    self._retire_cancelled()
                    if self._active:
                        self._decode_step()
            except Exception as exc:  # a failed forward fails every request in it; the engine keeps serving
                LOGGER.exception("generation step failed")
                self._fail([*admitted, *self._active.values()], exc)
                self._active.clear()
        with self._cond:
            leftovers, self._waiting = [*self._waiting, *self._active.values()], deque()
        self._active.clear()
        self._fail(leftovers, EngineClosed("The generation engine was closed before this request finished."))

    def _forget(self, row: _Row) -> None:
        if self._live.get(row.request.request_id) is row:
            del self._live[row.request.request_id]

    def _retire_cancelled(self) -> None:
        gone = [slot for slot, row in self._active.items() if row.cancelled]
        for slot in gone:
            row = self._active.pop(slot)
            self._stats.cancelled += 1
            self._fail([row], RequestCancelled(f"Request {row.request.request_id} was cancelled."))

    def _admission_due(self) -> bool:
        """A prefill costs about one decode step, so waiting rows are let in together: at once when nothing
        runs or they fill every free slot, otherwise every `admit_every` steps (bounding their wait)."""
        if not self._waiting:
            return False
        free = self.slots - len(self._active)
        return not self._active or len(self._waiting) >= free or self._steps_since_admission >= self.admit_every

    def _admit(self) -> list[_Row]:
        """Take waiting rows in arrival order while they fit: a free slot for rows that generate and
        timeline room for their prompt before `cur` and their tokens after it. The first row that does
        not fit stops admission, so none is overtaken forever; with nothing active the timeline restarts."""
        fresh = not self._active
        if fresh and self._cur:
            self._cur = 0
            self._stats.timeline_restarts += 1
        free = [slot for slot in range(self.slots) if slot not in self._active]
        admitted: list[_Row] = []
        cur, longest_output = self._cur, 0
        while self._waiting and len(admitted) < self.slots:
            row = self._waiting[0]
            if row.request.max_tokens > 0:
                prompt = len(row.request.prompt_ids)
                start_cur = max(cur, prompt) if fresh else cur
                output = max(longest_output, row.request.max_tokens)
                if not free or prompt > start_cur or start_cur + output > self.timeline:
                    break
                cur, longest_output = start_cur, output
                row.slot = free.pop(0)
            admitted.append(self._waiting.popleft())
        self._cur = cur
        if admitted:
            self._steps_since_admission = 0
        return admitted

    def _compact_timeline(self, least_shift: int = 32) -> None:
        """Move the live rows' keys/values down to position 0 once the oldest starts past half of `cur` (and
        at least `least_shift` in), so decode steps stop attending over positions no row uses."""
        if not self._active:
            return
        shift = min(row.start for row in self._active.values())
        if shift < least_shift or 2 * shift < self._cur:
            return
        for keys, values in self._cache.key_value_memory_dict.values():
            keys[: self._cur - shift] = keys[shift : self._cur].clone()
            values[: self._cur - shift] = values[shift : self._cur].clone()
        for row in self._active.values():
            row.start -= shift
        self._cur -= shift
        self._stats.timeline_compactions += 1

    def _prefill(self, rows: list[_Row]) -> None:
        """Run the new prompts in one left-padded forward, choose their first tokens, and move the
        keys/values of the rows that go on decoding into their slots, ending at `cur`."""
        from megatron.core.inference.contexts import StaticInferenceContext

        width = max(len(row.request.prompt_ids) for row in rows)
        pads = torch.tensor([width - len(row.request.prompt_ids) for row in rows])
        tokens = torch.full((len(rows), width), self.tokenizer.eos_id, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, int(pads[i]):] = torch.tensor(row.request.prompt_ids)
        keys = torch.arange(width)
        mask = (keys[None, :] > keys[:, None])[None, None] | (keys[None, :] < pads[:, None])[:, None, None, :]
        scratch = StaticInferenceContext(len(rows), width)
        scratch.materialize_only_last_token_logits = not any(row.request.echo for row in rows)
        logits = self._forward(tokens, (keys[None, :] - pads[:, None]).clamp(min=0), mask, scratch)
        self._stats.prefills += 1
        self._stats.prefilled_rows += len(rows)

        staying: list[tuple[int, _Row]] = []
        for i, row in enumerate(rows):
            if row.request.echo:
                row.prompt_logprobs = self._prompt_logprobs(row, logits[i, int(pads[i]):])
            self._advance_or_fail(row, logits[i, -1])
            if row.cancelled and not row.future.done():
                self._stats.cancelled += 1
                self._fail([row], RequestCancelled(f"Request {row.request.request_id} was cancelled."))
            elif row.done or row.future.done():
                self._finish(row)
            else:
                staying.append((i, row))
        if staying:
            self._store_prefill(scratch, staying, width)

    def _store_prefill(self, scratch, staying: list[tuple[int, _Row]], width: int) -> None:
        """Copy the prompts' keys/values of the rows that go on decoding to [cur - span, cur) of their slots.
        Only the last `span` positions (their longest prompt) move: a longer prompt in the same prefill
        may belong to a request that ended there (max_tokens=0) and has no room before `cur`."""
        cache = self._cache
        span = max(len(row.request.prompt_ids) for _, row in staying)
        source = torch.tensor([i for i, _ in staying], device=self.device)
        target = torch.tensor([row.slot for _, row in staying], device=self.device)
        for layer, (keys, values) in scratch.key_value_memory_dict.items():
            cache_keys, cache_values = cache.key_value_memory_dict[layer]
            cache_keys[self._cur - span : self._cur, target] = keys[width - span : width, source]
            cache_values[self._cur - span : self._cur, target] = values[width - span : width, source]
        for i, row in staying:
            row.start = self._cur - len(row.request.prompt_ids)
            self._active[row.slot] = row

    def _allocate_kv_cache(self):
        """The slots x timeline cache as a StaticInferenceContext, allocated now so a deployment that cannot
        hold it fails at startup with a clear message, not at its first request. Zero-filled so positions no
        row ever wrote are finite (a masked score times a NaN value would still be NaN). Per-position
        shapes come from a one-token forward, so they match megatron-core's own buffers."""
        import psutil
        from megatron.core.inference.contexts import StaticInferenceContext

        probe = StaticInferenceContext(1, 1)
        with torch.inference_mode():
            self._forward(torch.tensor([[self.tokenizer.eos_id]]), torch.zeros((1, 1), dtype=torch.long),
                          torch.zeros((1, 1, 1, 1), dtype=torch.bool), probe)
        layers = probe.key_value_memory_dict.items()
        needed = self.slots * self.timeline * sum(k[0, 0].nbytes + v[0, 0].nbytes for _, (k, v) in layers)
        free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else psutil.virtual_memory().available
        advice = (f"The KV cache for {self.slots} requests decoding together over {self.timeline} positions needs "
                  f"{needed / 2**30:.2f} GiB, more than the {free / 2**30:.2f} GiB free on {self.device}; lower "
                  "--max-batch-size.")
        if needed > free:
            raise ValueError(advice)
        cache = StaticInferenceContext(self.slots, self.timeline)
        try:
            for layer, (keys, values) in layers:
                cache.key_value_memory_dict[layer] = (
                    keys.new_zeros((self.timeline, self.slots, *keys.shape[2:])),
                    values.new_zeros((self.timeline, self.slots, *values.shape[2:])),
                )
        except torch.OutOfMemoryError:
            raise ValueError(advice) from None
        LOGGER.info("KV cache: %d slots x %d positions, %.1f MiB", self.slots, self.timeline, needed / 2**20)
        return cache

    def _decode_step(self) -> None:
        """Feed every active row's last token at position `cur`; empty slots below the highest active
        one ride along attending only to themselves."""
        rows = self._active
        fed_slots = max(rows) + 1
        cur = self._cur
        tokens = torch.full((fed_slots, 1), self.tokenizer.eos_id, dtype=torch.long)
        starts = torch.full((fed_slots,), cur, dtype=torch.long)
        for slot, row in rows.items():
            tokens[slot, 0], starts[slot] = row.next_token, row.start
        mask = (torch.arange(cur + 1)[None, :] < starts[:, None])[:, None, None, :]
        cache = self._cache
        cache.sequence_len_offset, cache.batch_size_offset = cur, 0
        cache.enable_decode_mode()
        logits = self._forward(tokens, (cur - starts)[:, None], mask, cache)[:, -1]
        self._cur = cur + 1
        self._steps_since_admission += 1
        self._stats.decode_steps += 1
        self._stats.decoded_rows += len(rows)
        for slot, row in list(rows.items()):
            self._advance_or_fail(row, logits[slot])
            if row.done or row.future.done():
                del rows[slot]
                self._finish(row)

    # -- model --------------------------------------------------------------
    def _forward(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, context) -> torch.Tensor:
        """fp32 logits over the real vocabulary; `mask` is True where attention is not allowed."""
        logits = self.model(
            tokens.to(self.device), positions.to(self.device), mask.to(self.device),
            inference_context=context, runtime_gather_output=True,
        )
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
        """Logprob of each prompt token given the ones before it (`logits` starts at the first); the first has none."""
        ids = row.request.prompt_ids
        log_probs = torch.log_softmax(logits[: len(ids) - 1], dim=-1)
        return [None] + [
            self._token_logprob(log_probs[j], ids[j + 1], row.request.logprobs) for j in range(len(ids) - 1)
        ]

    def _advance_or_fail(self, row: _Row, logits: torch.Tensor) -> None:
        """Choose the row's next token; a fault in one row (say, a sampler error) fails that request alone."""
        if row.done:
            return
        try:
            self._advance(row, logits)
        except Exception as exc:
            LOGGER.exception("choosing the next token failed")
            row.future.set_exception(exc)

    def _advance(self, row: _Row, logits: torch.Tensor) -> None:
        if row.constraint is None:
            token = row.sampler.choose(logits)
        else:
            token = row.sampler.choose(self._constrained_logits(row, logits))
            row.constraint.accept(token)
        row.next_token = token
        row.output_ids.append(token)
        if row.request.logprobs is not None:  # the model's raw logprobs, constrained or not
            row.logprobs.append(self._token_logprob(torch.log_softmax(logits, dim=-1), token, row.request.logprobs))
        if token == self.tokenizer.eos_id and not row.request.ignore_eos:
            row.finish_reason = "stop"  # the EOS token stays in output_ids and logprobs; text has none
        else:
            row.text = self.tokenizer.decode(row.output_ids)
            if row.request.stop and self._cut_at_stop(row):
                row.finish_reason = "stop"
            elif row.constraint is not None and row.constraint.is_finished():
                row.finish_reason = "stop"  # the grammar is complete (even at max_tokens)
            elif len(row.output_ids) >= row.request.max_tokens:
                row.finish_reason = "length"
        if row.on_delta is not None and not row.done:
            self._send_delta(row)  # the last delta goes out from _finish

    def _constrained_logits(self, row: _Row, logits: torch.Tensor) -> torch.Tensor:
        """The row's logits with the tokens its grammar forbids at -inf (a copy: logprobs use the raw ones)."""
        allowed = row.constraint.allowed_mask(logits.numel())
        if not bool(allowed.any()):
            detail = row.constraint.error() or "every token it allows is outside the model's vocabulary"
            raise RuntimeError(
                f"The structured-output grammar of this request allows no token of the model's vocabulary after "
                f"{len(row.output_ids)} generated token(s) ({detail}); the request ends here. This is a server-side "
                "fault; please report it with the request."
            )
        return logits.masked_fill(~allowed, float("-inf"))

    def _send_delta(self, row: _Row) -> None:
        """Hand the settled part of the answer since the last delta to the row's listener."""
        if row.done:
            count, upto = len(row.output_ids), len(row.text)
        else:
            upto = len(row.text) - self._unsettled_chars(row)
            count = row.sent_ids
            while count < len(row.output_ids) and len(self.tokenizer.decode(row.output_ids[: count + 1])) <= upto:
                count += 1
            upto = len(self.tokenizer.decode(row.output_ids[:count])) if count else 0
        first = not row.sent_any
        if count == row.sent_ids and not row.done and not first:
            return
        row.sent_any = True
        delta = GenerationDelta(
            output_ids=row.output_ids[row.sent_ids:count], text=row.text[row.sent_chars:upto],
            logprobs=row.logprobs[row.sent_ids:count] if row.request.logprobs is not None else None,
            prompt_logprobs=row.prompt_logprobs if first else None, finish_reason=row.finish_reason,
        )
        row.sent_ids, row.sent_chars = count, max(row.sent_chars, upto)
        try:
            row.on_delta(delta)
        except Exception:  # a listener's fault must not stop the engine; the row still finishes
            LOGGER.exception("a stream listener failed")

    @staticmethod
    def _unsettled_chars(row: _Row) -> int:
        """Characters at the end of the text that may still change: the longest suffix that begins a stop
        string, or an incomplete character (a tokenizer decodes a partial UTF-8 sequence as U+FFFD)."""
        text = row.text
        held = 0
        for stop in row.request.stop:
            for length in range(min(len(stop) - 1, len(text)), held, -1):
                if text.endswith(stop[:length]):
                    held = length
                    break
        if text.endswith("\ufffd"):
            held = max(held, len(text) - len(text.rstrip("\ufffd")))
        return held

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

    def _finish(self, row: _Row) -> None:
        if row.future.done():  # already failed alone
            return
        row.finish_reason = row.finish_reason or "length"
        if row.on_delta is not None:
            self._send_delta(row)
        row.future.set_result(GenerationResult(
            output_ids=row.output_ids, text=row.text, finish_reason=row.finish_reason or "length",
            prompt_logprobs=row.prompt_logprobs,
            output_logprobs=row.logprobs if row.request.logprobs is not None else None,
        ))

    @staticmethod
    def _fail(rows: list[_Row], exc: BaseException) -> None:
        for row in rows:
            if not row.future.done():
                row.future.set_exception(exc)
