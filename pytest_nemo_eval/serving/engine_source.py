"""Which engine a backend serves: the GenerationEngine over the checkpoint, in every deployment.

One private hook exists for benchmarks/bench_serving.py only: when the environment variable
`_NEMO_EVAL_BENCH_ENGINE` names a Python file, its `create(settings)` builds the engine instead
(benchmarks/_standin_engine.py, an engine that costs no CPU, to measure the HTTP front and the
backend hop apart from the model). It is not an option of `nemo-eval deploy`, the plugin or the
settings; the leading underscore says it is not for users. Both backends (PyTriton in the deploy
process, Ray in each replica, which inherits the variable from the head it was started by) build
their engine here, so the stand-in sits behind the real backend seam.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from pytest_nemo_eval.serving.settings import ServeSettings

BENCH_ENGINE_ENV = "_NEMO_EVAL_BENCH_ENGINE"


def open_engine(settings: ServeSettings) -> Any:
    """A started-on-demand engine (GenerationEngine's calls: submit, generate, cancel, stats, alive, close,
    tokenizer, max_context, model_id) for the deployment `settings` describe."""
    hook = os.environ.get(BENCH_ENGINE_ENV)
    if hook:
        return _load_hook(Path(hook)).create(settings)
    from pytest_nemo_eval.checkpoint.loader import load_checkpoint
    from pytest_nemo_eval.serving.engine import GenerationEngine

    loaded = load_checkpoint(settings.checkpoint, device=None if settings.device == "auto" else settings.device,
                             tensor_parallel=settings.tensor_parallel, pipeline_parallel=settings.pipeline_parallel)
    return GenerationEngine(loaded, slots=settings.max_batch_size)


def _load_hook(path: Path) -> Any:
    if not path.is_file():
        raise ValueError(f"{BENCH_ENGINE_ENV}={path} names no file. This variable is a benchmark's private hook "
                         f"(benchmarks/bench_serving.py sets it); unset it to serve the checkpoint's model.")
    spec = importlib.util.spec_from_file_location("_nemo_eval_bench_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
