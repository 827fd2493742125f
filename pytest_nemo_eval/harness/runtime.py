"""One entry point for running a harness: `run_harness(inv, on_log) -> HarnessRun`.

It builds the NeMo Evaluator `run_eval` command line (the same for eval-factory
images and our builtin harness), hands it to the chosen runtime (Docker or a
local process), then parses `results.yml`. The runtimes only start, stream,
time out and clean up; they know nothing about tasks or scores.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import RuntimeUnavailable
from .results import HARNESS_LOG_FILE, EvalResults, load_results

BUILTIN_HARNESS = "builtin"
BUILTIN_IMAGE = "nemo-eval-harness:local"
EVAL_FACTORY_IMAGE = "nvcr.io/nvidia/eval-factory/{harness}:latest"
# Where the output dir is mounted inside a harness container.
CONTAINER_OUTPUT_DIR = "/nemo-eval/output"

LogCallback = Callable[[str], None]


class HarnessInvocation(BaseModel):
    """Everything needed to run one benchmark's harness once."""

    model_config = ConfigDict(extra="forbid")
    harness: str = Field(description='"builtin" or an eval-factory harness name, e.g. "simple-evals"')
    task: str
    model_id: str
    model_url: str = Field(description="full endpoint URL, e.g. http://127.0.0.1:8000/v1/completions")
    model_type: Literal["completions", "chat"] = "completions"
    output_dir: Path
    overrides: dict[str, Any] = Field(default_factory=dict)
    runtime: Literal["docker", "local"] = "local"
    image: str | None = None
    timeout_s: float | None = None
    api_key_env: str | None = Field(default=None, description="NAME of the env var holding the API key")
    limit_samples: int | None = None
    parallelism: int | None = None
    log_prefix: str = ""

    @property
    def eval_type(self) -> str:
        return f"{self.harness}.{self.task}"

    @property
    def is_builtin(self) -> bool:
        return self.harness == BUILTIN_HARNESS

    def resolved_image(self) -> str:
        """The image to run: explicit, else ours for the builtin harness, else eval-factory's."""
        if self.image:
            return self.image
        return BUILTIN_IMAGE if self.is_builtin else EVAL_FACTORY_IMAGE.format(harness=self.harness)

    def all_overrides(self) -> dict[str, Any]:
        """User overrides plus limit/parallelism/API-key in NeMo Evaluator's `config.params` form."""
        merged: dict[str, Any] = {}
        if self.limit_samples is not None:
            merged["config.params.limit_samples"] = self.limit_samples
        if self.parallelism is not None:
            merged["config.params.parallelism"] = self.parallelism
        if self.api_key_env:
            merged["target.api_endpoint.api_key"] = self.api_key_env  # the NAME, never the value
        merged.update(self.overrides)
        return merged


class HarnessRun(BaseModel):
    """What one harness run produced, with its provenance."""

    results: EvalResults
    output_dir: Path
    log_path: Path
    duration_s: float
    command: list[str]
    image: str | None = None
    image_digest: str | None = None


def run_eval_args(inv: HarnessInvocation, *, output_dir: str) -> list[str]:
    """The `run_eval ...` arguments of NeMo Evaluator's CLI contract."""
    args = [
        "run_eval",
        "--eval_type", inv.eval_type,
        "--model_id", inv.model_id,
        "--model_url", inv.model_url,
        "--model_type", inv.model_type,
        "--output_dir", output_dir,
    ]
    overrides = inv.all_overrides()
    if overrides:
        args += ["--overrides", ",".join(f"{k}={_override_value(v)}" for k, v in overrides.items())]
    return args


def _override_value(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if "," in text:
        raise ValueError(
            f"override value {text!r} contains a comma, which NeMo Evaluator's --overrides k=v,... "
            "syntax cannot carry; pass it another way (e.g. a task_spec file)."
        )
    return text


def local_command(inv: HarnessInvocation, output_dir: Path) -> list[str]:
    """Command line for a local process: our harness via this Python, eval-factory via `nemo-evaluator`."""
    if inv.is_builtin:
        launcher = [sys.executable, "-m", "pytest_nemo_eval.harness.builtin.cli"]
    else:
        cli = shutil.which("nemo-evaluator") or shutil.which("eval-factory")
        if cli is None:
            raise RuntimeUnavailable(
                f"Harness {inv.harness!r} with runtime 'local' needs NeMo Evaluator's `nemo-evaluator` "
                f"command, which is not on PATH. Install the harness package in this environment "
                f"(eval-factory publishes them on PyPI, e.g. `pip install nvidia-{inv.harness}`), "
                f"or use runtime 'docker' with its eval-factory image."
            )
        launcher = [cli]
    return launcher + run_eval_args(inv, output_dir=str(output_dir))


def container_command(inv: HarnessInvocation) -> list[str]:
    """Command run inside a harness image (output dir mounted at CONTAINER_OUTPUT_DIR)."""
    cli = "nemo-eval-harness" if inv.is_builtin else "nemo-evaluator"
    return [cli] + run_eval_args(inv, output_dir=CONTAINER_OUTPUT_DIR)


def run_harness(inv: HarnessInvocation, on_log: LogCallback | None = None) -> HarnessRun:
    """Run the harness of `inv` to completion and return its parsed results.

    Raises a `HarnessError` subclass on every failure; the process or container
    is gone by the time this returns or raises (also on Ctrl-C).
    """
    if inv.is_builtin and "task_spec" not in inv.overrides:
        from .builtin.tasks import find_task  # fails fast with close matches, before any start-up cost

        find_task(inv.task)
    if "task_spec" in inv.overrides:  # absolute, so it means the same file in a container (mounted there)
        resolved = str(Path(inv.overrides["task_spec"]).resolve())
        inv = inv.model_copy(update={"overrides": {**inv.overrides, "task_spec": resolved}})
    if inv.is_builtin and inv.runtime == "docker" and "code_isolation" not in inv.overrides:  # the container is
        inv = inv.model_copy(update={"overrides": {**inv.overrides, "code_isolation": "container"}})  # the boundary
    output_dir = Path(inv.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / HARNESS_LOG_FILE
    started = time.monotonic()
    if inv.runtime == "docker":
        from .docker_runtime import run_in_docker

        outcome = run_in_docker(inv, output_dir, log_path, on_log)
    else:
        from .local_runtime import run_locally

        outcome = run_locally(inv, output_dir, log_path, on_log)
    results = load_results(output_dir, log_path=log_path)
    return HarnessRun(
        results=results,
        output_dir=output_dir,
        log_path=log_path,
        duration_s=time.monotonic() - started,
        command=outcome.command,
        image=outcome.image,
        image_digest=outcome.image_digest,
    )


class RuntimeOutcome(BaseModel):
    """What a runtime reports back after the harness exited 0."""

    command: list[str]
    image: str | None = None
    image_digest: str | None = None
