"""Call the Triton-bound engine from many HTTP threads.

PyTriton's ModelClient is not thread-safe, so each thread of the HTTP front
gets its own (kept in a thread-local and reused across requests, so the
connection stays open).
"""

from __future__ import annotations

import json
import threading

import numpy as np

from pytest_nemo_eval.serving.engine import GenerationRequest, GenerationResult
from pytest_nemo_eval.serving.triton_binding import TRITON_MODEL_NAME


class GenerationFailed(Exception):
    """One request failed inside the engine; `invalid_request` tells a 400 from a 500."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.invalid_request = kind == "invalid_request"


class TritonGenerateClient:
    """Send GenerationRequests to Triton as rows of one batch and parse the results."""

    def __init__(self, triton_url: str, *, max_batch_size: int, timeout_s: float = 600.0) -> None:
        self.triton_url = triton_url
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._all_clients: list = []
        self._lock = threading.Lock()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            from pytriton.client import ModelClient

            client = ModelClient(
                self.triton_url, TRITON_MODEL_NAME, init_timeout_s=self.timeout_s, inference_timeout_s=self.timeout_s
            )
            self._local.client = client
            with self._lock:
                self._all_clients.append(client)
        return client

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Results in request order; several requests go as one Triton call (chunked to max_batch_size)."""
        results: list[GenerationResult] = []
        for start in range(0, len(requests), self.max_batch_size):
            chunk = requests[start : start + self.max_batch_size]
            rows = np.array([[r.model_dump_json().encode()] for r in chunk], dtype=np.object_)
            outputs = self._client().infer_batch(request=rows)["result"]
            results.extend(_parse_row(bytes(row[0])) for row in outputs)
        return results

    def close(self) -> None:
        with self._lock:
            clients, self._all_clients = self._all_clients, []
        for client in clients:
            try:
                client.close()
            except Exception:  # closing a broken connection at shutdown is not worth reporting
                pass


def _parse_row(raw: bytes) -> GenerationResult:
    payload = json.loads(raw)
    if "error" in payload:
        raise GenerationFailed(payload["error"], payload.get("kind", "server_error"))
    return GenerationResult.model_validate(payload)
