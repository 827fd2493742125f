"""The PyTriton backend: one GenerationEngine in this process, behind tritonserver's dynamic batcher.

engine (in-flight batching) <- TritonBinding (decoupled model, dynamic batching) <- TritonGenerateClient.

Streams go to the engine directly: it runs in this process, and Triton has nothing to batch for a stream
(its streaming model takes one request per call) but cost CPU per token: each delta crossed PyTriton's
IPC to the Python backend stub, tritonserver, an SSE hop back over HTTP and two JSON parses: about 1.1 ms
of CPU per token, against about 0.1 ms per token handed over in process, chunk encoding and writing included
(benchmarks/bench_serving.py --standin, chat 64 tokens at 16 clients). The engine's deltas that pile up while the front is busy go
on as one, as the streaming model merged them. Streams are cancelled in the engine directly.
"""

from __future__ import annotations

import queue
from concurrent.futures import Future
from typing import Any, Iterator

from pytest_nemo_eval.serving.backend import Health, ModelInfo
from pytest_nemo_eval.serving.generation import (
    GenerationDelta,
    GenerationFailed,
    GenerationRequest,
    GenerationResult,
    error_kind,
    merge_deltas,
)
from pytest_nemo_eval.serving.settings import ServeSettings

STREAM_IDLE_TIMEOUT_S = 600.0  # as the Triton client's timeout: no token for this long fails the stream


class PyTritonBackend:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._engine = None
        self._binding = None
        self._client = None

    def start(self) -> ModelInfo:
        from pytest_nemo_eval.serving.engine_source import open_engine
        from pytest_nemo_eval.serving.triton_binding import BatchingSettings, TritonBinding
        from pytest_nemo_eval.serving.triton_client import TritonGenerateClient

        s = self.settings
        engine = self._engine = open_engine(s)
        batching = BatchingSettings(max_batch_size=s.max_batch_size, max_queue_delay_us=s.max_queue_delay_us)
        self._binding = TritonBinding(engine, batching).start()
        self._client = TritonGenerateClient(self._binding.http_url)
        return ModelInfo(model_id=engine.model_id, tokenizer=engine.tokenizer, max_context=engine.max_context)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        assert self._client is not None, "start() first"
        return self._client.generate(requests)

    def stream(self, request: GenerationRequest) -> Iterator[GenerationDelta]:
        """The request's deltas from the engine in this process (see the module's docstring); a failure is
        GenerationFailed with the message and kind the Triton route gave; closing early cancels the request."""
        assert self._engine is not None, "start() first"
        return _engine_stream(self._engine, request)

    def cancel(self, request_id: str) -> None:
        if self._engine is not None and request_id:
            self._engine.cancel(request_id)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"backend": "pytriton"}
        if self._binding:
            stats["batching"] = self._binding.stats().model_dump()
        if self._engine:
            stats["engine"] = self._engine.stats().model_dump()
        return stats

    def health(self) -> Health:
        if self._engine is None or not self._engine.alive:
            return Health(False, "the generation engine is not running")
        return Health(True)

    def stop(self) -> None:
        """Stop the Triton client, tritonserver and the engine, in that order; idempotent."""
        client, self._client = self._client, None
        binding, self._binding = self._binding, None
        engine, self._engine = self._engine, None
        if client is not None:
            client.close()
        if binding is not None:
            binding.stop()
        if engine is not None:
            engine.close()


def _engine_stream(engine, request: GenerationRequest) -> Iterator[GenerationDelta]:
    events: queue.SimpleQueue = queue.SimpleQueue()
    try:
        future = engine.submit([request], on_delta=events.put)[0]
    except Exception as exc:  # noqa: BLE001 - a request the engine refuses (ValueError: a 400) fails its stream
        raise _failed(exc) from None
    future.add_done_callback(events.put)  # queued after every delta: both come from the engine's thread, in order
    finished = False
    try:
        while True:
            try:
                items = [events.get(timeout=STREAM_IDLE_TIMEOUT_S)]
            except queue.Empty:
                raise GenerationFailed(f"no token for {STREAM_IDLE_TIMEOUT_S:g} s") from None
            while not events.empty():  # deltas that piled up while the front was busy go on as one
                items.append(events.get_nowait())
            deltas = [item for item in items if not isinstance(item, Future)]
            ended = [item for item in items if isinstance(item, Future)]
            if deltas:
                delta = merge_deltas(deltas)
                if delta.finish_reason is not None:
                    finished = True
                yield delta
                if finished:
                    return
            if ended:
                finished = True
                error = ended[0].exception()
                if error is not None:
                    raise _failed(error)
                return
    finally:
        if not finished:
            engine.cancel(request.request_id or "")


def _failed(exc: BaseException) -> GenerationFailed:
    """As triton_binding's error answer: "<type>: <message>", a ValueError the request's fault."""
    return GenerationFailed(f"{type(exc).__name__}: {exc}", error_kind(exc))


def create(settings: ServeSettings) -> PyTritonBackend:
    return PyTritonBackend(settings)
