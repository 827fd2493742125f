"""Call the Triton-bound engine from many HTTP threads.

The model is decoupled (triton_binding.py), which Triton's HTTP ``infer`` route
refuses; its ``generate`` route serves it: one POST of a JSON object whose
``requests`` list becomes the input tensor, answered with the ``results`` list.
One thread-safe urllib3 connection pool with keep-alive serves every HTTP thread
of the front; requests.Session cost 3x the CPU per call here (it re-reads proxy
settings from the environment on every request), and that CPU is taken from the engine.

Streams do not come here: the PyTriton backend reads them from the engine in its own process.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import urllib3

from pytest_nemo_eval.serving.generation import (
    GenerationFailed,
    GenerationRequest,
    GenerationResult,
)
from pytest_nemo_eval.serving.triton_binding import TRITON_MODEL_NAME


class TritonGenerateClient:
    """Send GenerationRequests to Triton in one generate call and parse the results; thread-safe."""

    def __init__(self, triton_url: str, *, timeout_s: float = 600.0, connections: int = 64) -> None:
        address = urlsplit(triton_url)
        self.generate_path = f"/v2/models/{TRITON_MODEL_NAME}/generate"
        self._pool = urllib3.HTTPConnectionPool(
            address.hostname, address.port, maxsize=connections, timeout=timeout_s, retries=False,
        )

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Results in request order; all of them go in one call and generate side by side in the engine."""
        body = json.dumps({"requests": [request.model_dump_json() for request in requests]})
        reply = self._pool.request("POST", self.generate_path, body=body, headers={"Content-Type": "application/json"})
        if reply.status != 200:
            raise GenerationFailed(f"Triton answered HTTP {reply.status}: {reply.data[:500]!r}", "server_error")
        results = json.loads(reply.data)["results"]
        return [_parse_result(raw) for raw in (results if isinstance(results, list) else [results])]

    def close(self) -> None:
        self._pool.close()


def _parse_result(raw: str) -> GenerationResult:
    payload = json.loads(raw)
    if "error" in payload:
        raise GenerationFailed(payload["error"], payload.get("kind", "server_error"))
    return GenerationResult.model_validate(payload)
