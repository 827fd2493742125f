"""Bind a GenerationEngine to NVIDIA PyTriton: dynamic batching in front of in-flight batching.

Wire format: input ``requests`` and output ``results`` are BYTES vectors, one
cell per generation: the JSON of a GenerationRequest in, the JSON of a
GenerationResult out (or ``{"error": "...", "kind": "..."}`` when that one
request failed). Every per-request parameter (temperature, stop, logprobs, ...)
thus travels inside its cell, and Triton's dynamic batcher may group any
requests together.

The model is *decoupled*: Triton hands a batch to the inference callable and
goes on to the next without waiting for the answer, and the callable is a
coroutine that submits the rows to the engine and awaits them. So any number of
batches are in flight at once and their rows join the engine's running batch
(engine.py); a coupled model would hold every new batch in Triton's queue until
the previous one had generated its last token. Triton serves decoupled models
over gRPC streams and over HTTP's ``/v2/models/<name>/generate``, which
triton_client.py uses.

Streams do not go through Triton: the PyTriton backend hands them the engine's deltas in this process
(backends/pytriton.py says why).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sysconfig
import tempfile
import threading
from collections import Counter
from concurrent.futures import Future
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from pytest_nemo_eval.processes import end_processes
from pytest_nemo_eval.serving.generation import GenerationRequest, error_kind
from pytest_nemo_eval.serving.ports import free_port

TRITON_MODEL_NAME = "nemo_generate"
LOGGER = logging.getLogger(__name__)


class Engine(Protocol):
    """The part of serving.engine.GenerationEngine the binding needs."""

    def submit(self, requests: list, *, on_delta=None) -> list[Future]: ...


class BatchingSettings(BaseModel):
    """Triton dynamic batcher knobs: how many requests per callable call, how long to wait for more."""

    max_batch_size: int = 16
    max_queue_delay_us: int = 2000


class BatchStats(BaseModel):
    """How Triton's dynamic batcher grouped requests into callable calls."""

    batches: int = 0
    requests: int = 0
    max_batch_size_seen: int = 0
    batch_size_counts: dict[int, int] = {}


def apply_libpython_fix() -> None:
    """Put this interpreter's LIBDIR first on LD_LIBRARY_PATH (inherited by tritonserver).

    PyTriton's Python backend stub links libpython3.X.so; with a Python other
    than the system one it would load the wrong libpython and fail to start
    (DESIGN.md). pytriton copies os.environ when it spawns tritonserver, so
    setting it here, before Triton starts, is enough.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir:
        return
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if current[:1] != [libdir]:
        os.environ["LD_LIBRARY_PATH"] = ":".join([libdir, *[p for p in current if p != libdir]])


class TritonBinding:
    """Runs tritonserver (via PyTriton) with the engine as its one batched model.

    The inference callable runs in this process; tritonserver and its Python
    backend stub are children that PyTriton stops on `stop()` (and that die with
    this process through PR_SET_PDEATHSIG if it is killed).
    """

    def __init__(self, engine: Engine, settings: BatchingSettings | None = None, *, host: str = "127.0.0.1") -> None:
        self.engine = engine
        self.settings = settings or BatchingSettings()
        self.host = host
        self.http_port = 0
        self.grpc_port = 0
        self._triton = None
        self._workspace_root: str | None = None
        self._stats_lock = threading.Lock()
        self._batch_sizes: Counter[int] = Counter()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "TritonBinding":
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig

        apply_libpython_fix()
        self.http_port, self.grpc_port, metrics_port = (free_port(self.host) for _ in range(3))
        config = TritonConfig(
            http_address=self.host, http_port=self.http_port,
            grpc_address=self.host, grpc_port=self.grpc_port,
            metrics_address=self.host, metrics_port=metrics_port,
            allow_metrics=False, log_verbose=0, exit_timeout_secs=5,
        )
        try:
            self._triton = Triton(config=config, workspace=self._short_workspace())
            self._triton.bind(
                model_name=TRITON_MODEL_NAME,
                infer_func=self._infer,
                inputs=[Tensor(name="requests", dtype=bytes, shape=(-1,))],
                outputs=[Tensor(name="results", dtype=bytes, shape=(-1,))],
                config=ModelConfig(
                    max_batch_size=self.settings.max_batch_size,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=self.settings.max_queue_delay_us),
                    decoupled=True,
                ),
                strict=True,
            )
            self._triton.run()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop tritonserver and free its ports; safe to call twice.

        The model is unloaded before the server gets SIGINT (otherwise
        tritonserver waits out its exit timeout and may leave the backend stub
        behind), and any tritonserver/stub child still alive afterwards is killed.
        """
        triton, self._triton = self._triton, None
        try:
            if triton is not None:
                self._stop_triton(triton)
        finally:
            if self._workspace_root is not None:
                shutil.rmtree(self._workspace_root, ignore_errors=True)
                self._workspace_root = None

    def _short_workspace(self) -> str | None:
        """A workspace under the temp dir, unless PYTRITON_HOME is set: PyTriton's default,
        ~/.cache/pytriton/workspace_*, holds AF_UNIX sockets, and a long HOME pushed their paths
        past the kernel's 108-byte limit ("AF_UNIX path too long", the model never loaded)."""
        if os.environ.get("PYTRITON_HOME"):
            return None
        self._workspace_root = tempfile.mkdtemp(prefix="nemo-triton-")
        return os.path.join(self._workspace_root, "ws")  # PyTriton creates it and refuses an existing one

    @staticmethod
    def _stop_triton(triton) -> None:
        children = _triton_children()
        try:
            triton._model_manager.clean()  # pytriton has no public "unload all models" call
        except Exception:  # a server that already died cannot unload; stop() below still cleans up
            LOGGER.debug("model unload before stop failed", exc_info=True)
        triton.stop()
        end_processes(children, grace_s=0)  # triton.stop() has had its time

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"

    def stats(self) -> BatchStats:
        with self._stats_lock:
            counts = dict(sorted(self._batch_sizes.items()))
        return BatchStats(
            batches=sum(counts.values()),
            requests=sum(size * n for size, n in counts.items()),
            max_batch_size_seen=max(counts, default=0),
            batch_size_counts=counts,
        )

    # -- the inference callable --------------------------------------------
    async def _infer(self, requests: list) -> list[dict[str, np.ndarray]]:
        """One Triton batch: every cell of every request goes to the engine; answers come as they finish."""
        with self._stats_lock:
            self._batch_sizes[len(requests)] += 1
        pending = [[self._submit(bytes(cell)) for cell in request.data["requests"].reshape(-1)] for request in requests]
        return [
            {"results": np.array([[await _answer(cell) for cell in cells]], dtype=np.object_)} for cells in pending
        ]

    def _submit(self, raw: bytes) -> Future | bytes:
        """The engine's future for one cell, or the error answer when it cannot be submitted."""
        try:
            return self.engine.submit([GenerationRequest.model_validate_json(raw)])[0]
        except Exception as exc:
            if not isinstance(exc, ValueError):
                LOGGER.exception("submitting a request to the engine failed")
            return _error_answer(exc)


async def _answer(cell: Future | bytes) -> bytes:
    if isinstance(cell, bytes):
        return cell
    try:
        return (await asyncio.wrap_future(cell)).model_dump_json().encode()
    except Exception as exc:
        return _error_answer(exc)


def _error_answer(exc: Exception) -> bytes:
    """A request's failure as its answer: a ValueError (pydantic's ValidationError is one) is the request's
    fault, anything else the server's (logged where it was raised)."""
    return _error_json(f"{type(exc).__name__}: {exc}", error_kind(exc))


def _triton_children() -> list:
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if "triton" in p.name()]




def _error_json(message: str, kind: str) -> bytes:
    """A per-row failure: kind "invalid_request" becomes a 400 at the HTTP front, "server_error" a 500."""
    return json.dumps({"error": message, "kind": kind}).encode()
