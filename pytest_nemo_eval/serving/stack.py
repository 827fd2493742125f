"""The whole serving stack in one process: the OpenAI HTTP front over the chosen generation backend.

`nemo-eval deploy` runs one of these; in-process users (benchmarks) may too.
Start order is cheap-to-fail first (the HTTP port is bound before the model
loads), and `stop()` undoes whatever was started, in reverse, even after a
failed start.
"""

from __future__ import annotations

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread
from pytest_nemo_eval.serving.backend import GenerationBackend, load_backend
from pytest_nemo_eval.serving.openai_api import ServedModel, create_app
from pytest_nemo_eval.serving.settings import ServeSettings


class StackSettings(ServeSettings):
    http_threads: int = 32  # >= the number of concurrent clients, or they queue before the backend can batch them


class ServingStack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.model_id = ""
        self._http: ServerThread | None = None
        self.backend: GenerationBackend | None = None

    @property
    def url(self) -> str:
        assert self._http is not None, "start() first"
        return self._http.url

    def start(self) -> "ServingStack":
        s = self.settings
        try:
            backend = self.backend = load_backend(s.backend, s)  # a missing extra fails before anything starts
            served = ServedModel.of_backend(backend, tool_parser=s.tool_parser, reasoning_parser=s.reasoning_parser)
            # Bind the HTTP port first: a taken port fails in milliseconds, not after loading the model.
            self._http = ServerThread(create_app(served), host=s.host, port=s.port, threads=s.http_threads,
                                      name="nemo-eval-openai")
            info = backend.start()
            served.set_model(info)
            self.model_id = info.model_id
            self._http.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the HTTP front, then the backend; idempotent."""
        http, self._http = self._http, None
        backend, self.backend = self.backend, None
        try:
            if http is not None:
                http.stop()
        finally:
            if backend is not None:
                backend.stop()
