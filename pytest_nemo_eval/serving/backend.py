"""The seam between the OpenAI HTTP front and whatever runs the model: `GenerationBackend`.

A backend is one file, `serving/backends/<name>.py`, with a `create(settings)` that
returns a GenerationBackend; `load_backend(name)` imports it only when asked, so
the plugin works without the packages of the backends it does not use (Ray).
Adding vLLM or TensorRT-LLM is one new file and one name in BACKENDS.

Every backend serves the same front (openai_api.py): the front tokenizes,
validates and shapes answers; the backend only generates.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from pytest_nemo_eval.serving.generation import GenerationDelta, GenerationRequest, GenerationResult

# name -> (module, the pip extra that provides its packages, a module whose absence means the extra is missing)
BACKENDS: dict[str, tuple[str, str | None, str | None]] = {
    "pytriton": ("pytest_nemo_eval.serving.backends.pytriton", None, None),
    "ray": ("pytest_nemo_eval.serving.backends.ray", "ray", "ray.serve"),
}


class BackendUnavailable(ValueError):
    """The backend cannot be used here (its extra is not installed, its cluster cannot be reached, it does not
    fit); one paragraph naming the fix. A ValueError: `nemo-eval deploy` reports it and exits 2."""


@dataclass
class ModelInfo:
    """What the HTTP front needs to know of the served model."""

    model_id: str
    tokenizer: Any  # checkpoint.tokenizer.Tokenizer
    max_context: int


@dataclass
class Health:
    ok: bool
    detail: str = ""


class GenerationBackend(Protocol):
    def start(self) -> ModelInfo:
        """Load the model and be ready to generate; raise BackendUnavailable/ValueError for the user's mistakes."""

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Results in request order (they generate side by side); GenerationFailed for a request that failed."""

    def stream(self, request: GenerationRequest) -> Iterator[GenerationDelta]:
        """The request's deltas as they are decoded; closing the iterator early stops the request."""

    def cancel(self, request_id: str) -> None:
        """Free the slot of a request whose client went away (best effort)."""

    def stats(self) -> dict[str, Any]:
        """Counters for /v1/health (batching, engine, replicas)."""

    def health(self) -> Health:
        """Whether the model can answer now; /v1/health answers 503 when not."""

    def stop(self) -> None:
        """Release everything start() made (processes, cluster state); idempotent, also after a failed start."""


def load_backend(name: str, settings) -> GenerationBackend:
    """The backend called `name`, built from ServeSettings; BackendUnavailable when its extra is missing."""
    problem = backend_missing(name)
    if problem:
        raise BackendUnavailable(problem)
    return importlib.import_module(BACKENDS[name][0]).create(settings)


def backend_missing(name: str) -> str | None:
    """Why backend `name` cannot be loaded in this environment (checked before anything starts), or None."""
    if name not in BACKENDS:
        return f"Unknown serving backend {name!r}; choose one of {', '.join(BACKENDS)}."
    _, extra, probe = BACKENDS[name]
    if probe is not None and importlib.util.find_spec(probe.split(".")[0]) is None:
        return (f"The {name} serving backend needs the `{extra}` extra, which is not installed: "
                f"pip install 'pytest-nemo-eval[{extra}]' (or choose --nemo-serving-backend pytriton).")
    return None
