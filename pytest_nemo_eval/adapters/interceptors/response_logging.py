"""Response logging: the response as the client gets it, one JSONL line each, secrets redacted."""

from __future__ import annotations

import time

from ..config import LoggingConfig
from ..exchange import ProxyRequest, ProxyResponse
from ..registry import ChainContext, Handler, Interceptor, register_interceptor
from .request_logging import known_secrets, loggable_body, open_log


@register_interceptor("response_logging")
class ResponseLoggingInterceptor(Interceptor):
    config_model = LoggingConfig

    def __init__(self, config: LoggingConfig, context: ChainContext) -> None:
        super().__init__(config, context)
        self.log = open_log(config, context, "responses")
        self.secrets = known_secrets(context)

    def handle(self, request: ProxyRequest, call_next: Handler) -> ProxyResponse:
        response = call_next(request)
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

    def close(self) -> None:
        self.log.close()
