"""The whole serving stack in one process: engine (in-flight batching) -> PyTriton (dynamic batching) -> OpenAI HTTP front.

`nemo-eval deploy` runs one of these; in-process users (benchmarks) may too.
Start order is cheap-to-fail first (the HTTP port is bound before the model
loads), and `stop()` undoes whatever was started, in reverse, even after a
failed start.
"""

from __future__ import annotations

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread
from pytest_nemo_eval.serving.openai_api import ServedModel, create_app
from pytest_nemo_eval.serving.settings import ServeSettings
from pytest_nemo_eval.serving.triton_binding import BatchingSettings, TritonBinding
from pytest_nemo_eval.serving.triton_client import TritonGenerateClient


class StackSettings(ServeSettings):
    http_threads: int = 32  # >= the number of concurrent clients, or they queue before Triton can batch them


class ServingStack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.model_id = ""
        self._http: ServerThread | None = None
        self._binding: TritonBinding | None = None
        self._client: TritonGenerateClient | None = None
        self._engine = None

    @property
    def url(self) -> str:
        assert self._http is not None, "start() first"
        return self._http.url

    def start(self) -> "ServingStack":
        from pytest_nemo_eval.checkpoint.loader import load_checkpoint
        from pytest_nemo_eval.serving.engine import GenerationEngine

        s = self.settings
        try:
            # Bind the HTTP port first: a taken port fails in milliseconds, not after loading the model.
            served = ServedModel(model_id="", tokenizer=None, max_context=0, generate=self._generate, stats=self._stats,
                                 stream=self._stream, cancel=self._cancel)
            self._http = ServerThread(create_app(served), host=s.host, port=s.port, threads=s.http_threads,
                                      name="nemo-eval-openai")
            loaded = load_checkpoint(s.checkpoint, device=None if s.device == "auto" else s.device,
                                     tensor_parallel=s.tensor_parallel, pipeline_parallel=s.pipeline_parallel)
            engine = self._engine = GenerationEngine(loaded, slots=s.max_batch_size)
            served.model_id, served.tokenizer, served.max_context = loaded.model_id, engine.tokenizer, engine.max_context
            self.model_id = loaded.model_id
            batching = BatchingSettings(max_batch_size=s.max_batch_size, max_queue_delay_us=s.max_queue_delay_us)
            self._binding = TritonBinding(engine, batching).start()
            self._client = TritonGenerateClient(self._binding.http_url)
            self._http.start()
        except BaseException:
            self.stop()
            raise
        return self

    def _generate(self, requests):
        assert self._client is not None
        return self._client.generate(requests)

    def _stream(self, request):
        assert self._client is not None
        return self._client.stream(request)

    def _cancel(self, request_id: str | None) -> None:
        """A streaming client went away: the engine (in this process) frees the request's slot at once,
        without waiting for Triton to notice the closed stream."""
        if self._engine is not None and request_id:
            self._engine.cancel(request_id)

    def _stats(self) -> dict:
        stats = {}
        if self._binding:
            stats["batching"] = self._binding.stats().model_dump()
        if self._engine:
            stats["engine"] = self._engine.stats().model_dump()
        return stats

    def stop(self) -> None:
        """Stop the HTTP front, the Triton clients, tritonserver and the engine; idempotent."""
        http, self._http = self._http, None
        engine, self._engine = self._engine, None
        client, self._client = self._client, None
        binding, self._binding = self._binding, None
        if http is not None:
            http.stop()
        if client is not None:
            client.close()
        if binding is not None:
            binding.stop()
        if engine is not None:
            engine.close()
