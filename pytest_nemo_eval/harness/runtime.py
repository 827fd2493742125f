"""One entry point for running a harness: `run_harness(inv, on_log) -> HarnessRun`.

It reserves the run's own ports, hands the NeMo Evaluator `run_eval` command
(the same for eval-factory harnesses and our builtin one) to the chosen runtime
(Docker or a local process), then parses `results.yml`. The runtimes only
start, stream, time out and clean up; they know nothing about tasks or scores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from .docker_runtime import run_in_docker
from .interrupts import sigterm_as_interrupt
from .invocation import (  # re-exported: the public names of a harness run
    BUILTIN_HARNESS,
    BUILTIN_IMAGE,
    CONTAINER_OUTPUT_DIR,
    HarnessInvocation,
    LogCallback,
    Mount,
    RuntimeOutcome,
    run_eval_args,
)
from .local_runtime import local_command, run_locally
from .ports import reserved_port
from .results import HARNESS_LOG_FILE, EvalResults, load_results

__all__ = [
    "BUILTIN_HARNESS", "BUILTIN_IMAGE", "CONTAINER_OUTPUT_DIR", "HarnessInvocation", "HarnessRun", "Mount",
    "RuntimeOutcome", "local_command", "run_eval_args", "run_harness",
]


class Runtime(Protocol):
    """Starts the harness of `inv`, streams its log, enforces its timeout, cleans up."""

    def __call__(self, inv: HarnessInvocation, output_dir: Path, log_path: Path, on_log: LogCallback | None,
                 *, adapter_port: int) -> RuntimeOutcome: ...


RUNTIMES: dict[str, Runtime] = {"docker": run_in_docker, "local": run_locally}


class HarnessRun(BaseModel):
    """What one harness run produced, with its provenance."""

    results: EvalResults
    output_dir: Path
    log_path: Path
    duration_s: float
    command: list[str]
    command_line: str
    image: str | None = None
    image_digest: str | None = None


def run_harness(inv: HarnessInvocation, on_log: LogCallback | None = None) -> HarnessRun:
    """Run the harness of `inv` to completion and return its parsed results.

    Raises a `HarnessError` subclass on every failure; the process or container
    is gone by the time this returns or raises (also on Ctrl-C and SIGTERM).
    """
    if inv.is_builtin and "task_spec" not in inv.overrides:
        from .builtin.tasks import find_task  # fails fast with close matches, before any start-up cost

        find_task(inv.task)
    if not inv.is_builtin and inv.runtime == "local":
        from .framework_definitions import check_task  # the installed package's task list, before start-up

        check_task(inv.harness, inv.task)
    if "task_spec" in inv.overrides:  # absolute, so it means the same file in a container (mounted there)
        resolved = str(Path(inv.overrides["task_spec"]).resolve())
        inv = inv.model_copy(update={"overrides": {**inv.overrides, "task_spec": resolved}})
    if inv.is_builtin and "code_isolation" not in inv.overrides:  # the level decided for the run, else the
        level = inv.code_isolation or ("container" if inv.runtime == "docker" else None)  # container is the boundary
        if level:
            inv = inv.model_copy(update={"overrides": {**inv.overrides, "code_isolation": level}})
    output_dir = Path(inv.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / HARNESS_LOG_FILE
    started = time.monotonic()
    with sigterm_as_interrupt(), reserved_port() as adapter_port:
        outcome = RUNTIMES[inv.runtime](inv, output_dir, log_path, on_log, adapter_port=adapter_port)
    results = load_results(output_dir, log_path=log_path)
    return HarnessRun(
        results=results,
        output_dir=output_dir,
        log_path=log_path,
        duration_s=time.monotonic() - started,
        command=outcome.command,
        command_line=outcome.command_line,
        image=outcome.image,
        image_digest=outcome.image_digest,
    )
