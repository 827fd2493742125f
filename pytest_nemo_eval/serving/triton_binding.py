"""Bind a GenerationEngine to NVIDIA PyTriton with dynamic batching.

Wire format: one BYTES input ``request`` per row holding the JSON of a
GenerationRequest, one BYTES output ``result`` holding the JSON of a
GenerationResult (or ``{"error": "...", "kind": "..."}`` when that one request failed). Every
per-request parameter (temperature, stop, logprobs, ...) thus travels inside
the row, and Triton's dynamic batcher may group any requests together.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sysconfig
import tempfile
import threading
from collections import Counter
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from pytest_nemo_eval.serving.ports import free_port

TRITON_MODEL_NAME = "nemo_generate"
LOGGER = logging.getLogger(__name__)


class Engine(Protocol):
    """The part of serving.engine.GenerationEngine the binding needs."""

    def generate(self, requests: list) -> list: ...


class BatchingSettings(BaseModel):
    """Triton dynamic batcher knobs: how many rows per engine call, how long to wait for more."""

    max_batch_size: int = 16
    max_queue_delay_us: int = 2000


class BatchStats(BaseModel):
    """How the dynamic batcher grouped requests: proof that batching happened."""

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
        from pytriton.decorators import batch
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
                infer_func=batch(self._infer_rows),
                inputs=[Tensor(name="request", dtype=bytes, shape=(1,))],
                outputs=[Tensor(name="result", dtype=bytes, shape=(1,))],
                config=ModelConfig(
                    max_batch_size=self.settings.max_batch_size,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=self.settings.max_queue_delay_us),
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
        _kill_survivors(children)

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
    def _infer_rows(self, request: np.ndarray) -> dict[str, np.ndarray]:
        """One Triton batch -> one engine call; a failing request fails alone, not its batch."""
        from pytest_nemo_eval.serving.engine import GenerationRequest

        rows = [bytes(cell[0]) for cell in request]
        with self._stats_lock:
            self._batch_sizes[len(rows)] += 1
        outputs: list[bytes | None] = [None] * len(rows)
        parsed: list[tuple[int, GenerationRequest]] = []
        for i, raw in enumerate(rows):
            try:
                parsed.append((i, GenerationRequest.model_validate_json(raw)))
            except ValueError as exc:
                outputs[i] = _error_json(f"invalid GenerationRequest: {exc}", "invalid_request")
        if parsed:
            for i, result in zip([i for i, _ in parsed], self._generate([r for _, r in parsed])):
                outputs[i] = result
        return {"result": np.array([[out] for out in outputs], dtype=np.object_)}

    def _generate(self, requests: list) -> list[bytes]:
        try:
            return [result.model_dump_json().encode() for result in self.engine.generate(requests)]
        except Exception as exc:
            if len(requests) == 1:
                LOGGER.exception("generation failed")
                kind = "invalid_request" if isinstance(exc, ValueError) else "server_error"
                return [_error_json(f"{type(exc).__name__}: {exc}", kind)]
        # retry one by one so only the faulty request reports the error
        return [self._generate([single])[0] for single in requests]


def _triton_children() -> list:
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if "triton" in p.name()]


def _kill_survivors(processes: list, timeout_s: float = 5.0) -> None:
    import psutil

    for proc in processes:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=timeout_s)


def _error_json(message: str, kind: str) -> bytes:
    """A per-row failure: kind "invalid_request" becomes a 400 at the HTTP front, "server_error" a 500."""
    return json.dumps({"error": message, "kind": kind}).encode()
