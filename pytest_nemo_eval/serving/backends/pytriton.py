"""The PyTriton backend: one GenerationEngine in this process, behind tritonserver's dynamic batcher.

engine (in-flight batching) <- TritonBinding (decoupled model, dynamic batching) <- TritonGenerateClient.
Streams are cancelled in the engine directly (same process), without waiting for Triton to notice
the closed connection.
"""

from __future__ import annotations

from typing import Any, Iterator

from pytest_nemo_eval.serving.backend import Health, ModelInfo
from pytest_nemo_eval.serving.generation import GenerationDelta, GenerationRequest, GenerationResult
from pytest_nemo_eval.serving.settings import ServeSettings


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
        assert self._client is not None, "start() first"
        return self._client.stream(request)

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


def create(settings: ServeSettings) -> PyTritonBackend:
    return PyTritonBackend(settings)
