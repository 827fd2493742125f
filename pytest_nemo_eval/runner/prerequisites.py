"""What a benchmark needs from the machine (GPU, Docker daemon, image, a sandbox for
model-written code), checked before it runs so a missing piece is a skip that says
what is missing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from pytest_nemo_eval.runner.machine_probes import docker_problem, gpu_available, image_problem
from pytest_nemo_eval.suite import ResolvedBenchmark

if TYPE_CHECKING:
    from pytest_nemo_eval.runner.plugin_state import NemoState


def missing(requires: list[str], *, deploying: bool, runtime: str, image: str | None) -> list[str]:
    """Human-readable list of what is missing for a benchmark (empty = it can run)."""
    problems = []
    if "gpu" in requires and deploying and not gpu_available():
        problems.append("a GPU (none visible: nvidia-smi lists no device) to deploy this model")
    if runtime == "docker" or "docker" in requires:
        problem = docker_problem()
        if problem:
            problems.append(f"Docker ({problem})")
        elif runtime == "docker" and image:
            problem = image_problem(image)
            if problem:
                problems.append(problem)
    return problems


class BenchmarkSetup(BaseModel):
    """What was decided before the harness ran: where it runs and behind which boundary."""

    runtime: str
    runtime_reason: str
    image: str | None = None
    code_isolation: str | None = None
    suite_sha256: str | None = None


class CodeIsolation(BaseModel):
    """The boundary a benchmark's model-written code runs behind (`none`: it runs none), or why it cannot run."""

    level: Literal["container", "bubblewrap", "unsandboxed", "none"] | None = None
    problem: str | None = None

    @property
    def run_level(self) -> str | None:
        """What the harness run is told (None when the benchmark runs no model code)."""
        return None if self.level == "none" else self.level


def code_isolation(benchmark, *, runtime: str, allow_unsandboxed: bool) -> CodeIsolation:
    """The one ladder (harness/code_isolation.py) for every harness: `container` in Docker, else
    `bubblewrap` when its sandbox works here (per sample for the builtin harness, around the whole
    process for an eval-factory one), else `unsandboxed` on opt-in, else a problem (the benchmark is
    skipped). Benchmarks that run no model-written code: `none`."""
    from pytest_nemo_eval.harness.code_isolation import NoSandbox, choose_isolation
    from pytest_nemo_eval.harness.runtime import BUILTIN_HARNESS

    if not _runs_model_code(benchmark):
        return CodeIsolation(level="none")
    if benchmark.harness == BUILTIN_HARNESS:
        from pytest_nemo_eval.harness.builtin.bubblewrap import (
            bubblewrap_problem as sandbox_problem,
        )
    else:
        from pytest_nemo_eval.harness.harness_sandbox import (
            harness_sandbox_problem as sandbox_problem,
        )
    try:
        return CodeIsolation(level=choose_isolation(in_container=runtime == "docker", sandbox_problem=sandbox_problem,
                                                    allow_unsandboxed=allow_unsandboxed))
    except NoSandbox as exc:
        return CodeIsolation(problem=str(exc))


class Prepared(BaseModel):
    """What was decided before a benchmark runs, and why it cannot run here (`skip`), if it cannot."""

    setup: BenchmarkSetup
    run_level: str | None = None  # what the harness run is told about code isolation
    skip: str | None = None


def prepare(state: NemoState, benchmark: ResolvedBenchmark, *, suite_sha256: str | None = None) -> Prepared:
    """Where the benchmark runs (runtime, image) and behind which boundary, for a suite item and the
    `nemo_benchmark` fixture alike; `skip` says what this machine lacks, or why model code cannot run."""
    runtime, runtime_reason = state.runtime_choice(benchmark)
    image = benchmark.image_for_docker() if runtime == "docker" else None
    setup = BenchmarkSetup(runtime=runtime, runtime_reason=runtime_reason, image=image, suite_sha256=suite_sha256)
    lacking = missing(benchmark.requires, deploying=state.deploying, runtime=runtime, image=image)
    if lacking:
        return Prepared(setup=setup, skip=f"{benchmark.id} needs " + "; ".join(lacking))
    isolation = code_isolation(benchmark, runtime=runtime, allow_unsandboxed=state.options.allow_unsandboxed_code)
    if isolation.problem:
        return Prepared(setup=setup, skip=f"{benchmark.id}: {isolation.problem}")
    return Prepared(setup=setup.model_copy(update={"code_isolation": isolation.level}), run_level=isolation.run_level)


def _runs_model_code(benchmark) -> bool:
    """An eval-factory task that executes model code (framework_definitions.runs_model_code), or a builtin
    task of type `code` (registered, or a `task_spec` file); unknown builtin tasks are left to the harness
    run, which names close matches."""
    from pytest_nemo_eval.harness.builtin.tasks import find_task, load_spec
    from pytest_nemo_eval.harness.errors import HarnessError
    from pytest_nemo_eval.harness.framework_definitions import runs_model_code
    from pytest_nemo_eval.harness.runtime import BUILTIN_HARNESS

    if benchmark.harness != BUILTIN_HARNESS:
        return runs_model_code(benchmark.harness, benchmark.task, benchmark.params)
    try:
        task_spec = benchmark.params.get("task_spec")
        spec = load_spec(task_spec, name=benchmark.task) if task_spec else find_task(benchmark.task)
    except (HarnessError, OSError):
        return False
    return spec.type == "code"
