"""Response logging: the response as the client gets it, one JSONL line each, secrets redacted."""

from __future__ import annotations

import time

from ..exchange import ProxyRequest, ProxyResponse
from ..registry import Handler, register_interceptor
from ..streaming import assemble
from .request_logging import JsonlLoggingInterceptor, loggable_body


@register_interceptor("response_logging")
class ResponseLoggingInterceptor(JsonlLoggingInterceptor):
    kind = "responses"
    order = 10  # outside reasoning: logs the reply as the client gets it

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        response = call_next(request)
        if response.stream is not None:  # logged once whole, as the one response its chunks amount to
            response.stream.on_finish(lambda body, complete: self._log_stream(request, response, body, complete))
            return response
        if self.log.wants_more():
            self.log.write({
                "time": time.time(),
                "benchmark": request.benchmark,
                "path": request.path,
                "status": response.status,
                "from_cache": response.from_cache,
                "body": loggable_body(response.body, response.json(), self.secrets),
            })
        return response

    def _log_stream(self, request: ProxyRequest, response: ProxyResponse, body: bytes, complete: bool) -> None:
        if self.log.wants_more():
            assembled = assemble(body)
            self.log.write({
                "time": time.time(),
                "benchmark": request.benchmark,
                "path": request.path,
                "status": response.status,
                "from_cache": False,
                "streamed": True,
                "complete": complete,  # False: the client left before the stream ended
                "body": loggable_body(body, assembled, self.secrets),
            })
