"""A stand-in for GenerationEngine that costs no CPU: the serving front's ceiling, measured apart from the model.

For benchmarks/bench_serving.py only (`--standin`); a deployment loads it through the private hook
serving/engine_source.py reads ($_NEMO_EVAL_BENCH_ENGINE = this file), so it sits behind the real
backend seam (PyTriton's binding and client, Ray's replicas and handle) with the real tokenizer and
chat template of the checkpoint. Not a bench_ script (the CI check runs those); never a deployment.

What it answers: every request generates the same token ids (a fixed English sentence cycled):
`_NEMO_EVAL_STANDIN_TOKENS` of them and then the EOS (finish_reason "stop"), or exactly max_tokens with
ignore_eos / a smaller max_tokens ("length"). With `_NEMO_EVAL_STANDIN_STEP_MS` = 0 a request is done
when submitted (a streamed one gets its whole answer as one delta); above 0 one scheduler thread
sleeps that long per decode step, as a GPU step takes wall-clock time, and then hands every active
request (at most `slots` = max_batch_size; the rest wait) its next token. Sleeping costs no CPU;
the bookkeeping per step is what the real engine's scheduler does too.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path

from pytest_nemo_eval.serving.engine import EngineStats, RequestCancelled
from pytest_nemo_eval.serving.generation import GenerationDelta, GenerationRequest, GenerationResult

STEP_ENV = "_NEMO_EVAL_STANDIN_STEP_MS"
TOKENS_ENV = "_NEMO_EVAL_STANDIN_TOKENS"
SENTENCE = " the quick brown fox jumps over the lazy dog and runs back home again"


class _Row:
    def __init__(self, request: GenerationRequest, on_delta) -> None:
        self.request, self.on_delta = request, on_delta
        self.emitted = 0
        self.future: Future[GenerationResult] = Future()


class StandinEngine:
    def __init__(self, tokenizer, model_id: str, max_context: int, *, slots: int, step_s: float,
                 answer_tokens: int) -> None:
        self.tokenizer, self.model_id, self.max_context = tokenizer, model_id, max_context
        self.slots, self.step_s, self.answer_tokens = slots, step_s, answer_tokens
        ids = tokenizer.encode(SENTENCE)
        self._cycle = [i for i in ids if tokenizer.decode([i])]  # tokens with text of their own
        self._pieces = [tokenizer.decode([i]) for i in self._cycle]
        self._stats = EngineStats(slots=slots)
        self._cond = threading.Condition()
        self._waiting: deque[_Row] = deque()
        self._active: list[_Row] = []
        self._live: dict[str, _Row] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- what the answer is ------------------------------------------------------------------
    def _length(self, request: GenerationRequest) -> tuple[int, bool]:
        """(tokens it generates, whether the last is the EOS)."""
        if request.ignore_eos or request.max_tokens <= self.answer_tokens:
            return request.max_tokens, False
        return self.answer_tokens + 1, True

    def _token(self, i: int) -> tuple[int, str]:
        return self._cycle[i % len(self._cycle)], self._pieces[i % len(self._pieces)]

    def _result(self, request: GenerationRequest) -> GenerationResult:
        count, eos = self._length(request)
        words = count - eos
        ids = [self._token(i)[0] for i in range(words)] + ([self.tokenizer.eos_id] if eos else [])
        return GenerationResult(output_ids=ids, text="".join(self._token(i)[1] for i in range(words)),
                                finish_reason="stop" if eos else "length")

    # -- GenerationEngine's calls -------------------------------------------------------------
    def submit(self, requests: list[GenerationRequest], *, on_delta=None) -> list[Future]:
        rows = [_Row(request, on_delta) for request in requests]
        if self.step_s <= 0:  # "returns at once"
            for row in rows:
                result = self._result(row.request)
                if on_delta is not None:
                    on_delta(GenerationDelta(output_ids=result.output_ids, text=result.text,
                                             finish_reason=result.finish_reason))
                row.future.set_result(result)
            with self._cond:
                self._stats.prefills += 1
                self._stats.prefilled_rows += len(rows)
                self._stats.decode_steps += 1
                self._stats.decoded_rows += len(rows)
            return [row.future for row in rows]
        with self._cond:
            if self._closed:
                raise RuntimeError("The stand-in engine is closed.")
            if self._thread is None:
                self._thread = threading.Thread(target=self._schedule, name="standin-engine", daemon=True)
                self._thread.start()
            self._waiting.extend(rows)
            for row in rows:
                if row.request.request_id:
                    self._live[row.request.request_id] = row
            self._cond.notify()
        return [row.future for row in rows]

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [future.result() for future in self.submit(requests)]

    def cancel(self, request_id: str) -> bool:
        with self._cond:
            row = self._live.pop(request_id, None)
            if row is None or row.future.done():
                return False
            if row in self._waiting:
                self._waiting.remove(row)
            if row in self._active:
                self._active.remove(row)
            self._stats.cancelled += 1
        row.future.set_exception(RequestCancelled(f"Request {request_id} was cancelled."))
        return True

    def stats(self) -> EngineStats:
        with self._cond:
            return self._stats.model_copy(update={"active_rows": len(self._active)})

    @property
    def alive(self) -> bool:
        return not self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- the decode loop (step_s > 0) -----------------------------------------------------------
    def _schedule(self) -> None:
        next_step = time.monotonic()
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._active:
                    self._cond.wait()
                    next_step = time.monotonic()
                if self._closed:
                    return
                admitted = 0
                while self._waiting and len(self._active) < self.slots:
                    self._active.append(self._waiting.popleft())
                    admitted += 1
                if admitted:
                    self._stats.prefills += 1
                    self._stats.prefilled_rows += admitted
            next_step += self.step_s
            time.sleep(max(0.0, next_step - time.monotonic()))  # the "GPU step": wall-clock time, no CPU
            with self._cond:
                rows = list(self._active)
                self._stats.decode_steps += 1
                self._stats.decoded_rows += len(rows)
            for row in rows:
                self._step(row)

    def _step(self, row: _Row) -> None:
        count, eos = self._length(row.request)
        i = row.emitted
        row.emitted += 1
        last = row.emitted >= count
        if row.on_delta is not None and not row.future.done():
            token, piece = (self.tokenizer.eos_id, "") if (last and eos) else self._token(i)
            row.on_delta(GenerationDelta(output_ids=[token], text=piece,
                                         finish_reason=("stop" if eos else "length") if last else None))
        if last:
            with self._cond:
                if row in self._active:
                    self._active.remove(row)
                if row.request.request_id:
                    self._live.pop(row.request.request_id, None)
            if not row.future.done():
                row.future.set_result(self._result(row.request))


def create(settings) -> StandinEngine:
    """The hook serving/engine_source.py calls: the checkpoint's tokenizer and context, no weights."""
    from pytest_nemo_eval.checkpoint.config import read_architecture
    from pytest_nemo_eval.checkpoint.loader import check_layout
    from pytest_nemo_eval.checkpoint.tokenizer import load_tokenizer

    root = check_layout(Path(settings.checkpoint))
    return StandinEngine(load_tokenizer(root / "context"), root.name, read_architecture(root / "context").seq_length,
                         slots=settings.max_batch_size, step_s=float(os.environ.get(STEP_ENV, "0")) / 1000,
                         answer_tokens=int(os.environ.get(TOKENS_ENV, "4")))
