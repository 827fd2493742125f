"""Code generation scored by running the record's tests on the completion (HumanEval-style pass@1).

Program = prompt + completion + test + check call; it runs in the sandbox at the
run's isolation level (isolation.py), so a sample that loops forever, eats memory,
forks, opens a socket or touches files outside its scratch directory is scored as
a failure and the run goes on.
"""

from __future__ import annotations

from .client import ModelClient
from .sample import GenerationParams, SampleOutcome
from .isolation import Isolation
from .sandbox import run_sandboxed
from .tasks import CodeSpec

METRICS = ("pass@1",)


def required_fields(spec: CodeSpec) -> list[str]:
    return [spec.entry_point_field, spec.test_field]


def build_program(spec: CodeSpec, prompt: str, completion: str, record: dict) -> str:
    check = spec.check_template.format(entry_point=record[spec.entry_point_field])
    return f"{prompt}{completion}\n\n{record[spec.test_field]}\n\n{check}\n"


def score(
    spec: CodeSpec, client: ModelClient, record: dict, params: GenerationParams, *, isolation: Isolation
) -> SampleOutcome:
    prompt = spec.render_prompt(record)
    completion = params.generate(client, spec, prompt)
    result = run_sandboxed(
        build_program(spec, prompt, completion, record), timeout_s=spec.timeout_s, memory_mb=spec.memory_mb,
        max_processes=spec.max_processes, isolation=isolation,
    )
    return SampleOutcome(
        id=record.get(spec.id_field), prompt=prompt, response=completion,
        scores={"pass@1": float(result.passed)}, details={"status": result.status, "detail": result.detail},
    )
