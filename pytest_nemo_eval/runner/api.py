"""Benchmarks from Python tests: the `nemo_benchmark` fixture's implementation.

    def test_addition(nemo_benchmark):
        outcome = nemo_benchmark({"name": "add", "harness": "builtin", "task": "demo_addition",
                                  "thresholds": {"exact_match": {"min": 0.6}}})
        outcome.check()                       # BenchmarkFailed with every metric, like a suite item
        assert outcome.scores["exact_match"].value > 0.6

A harness or benchmark error raises `BenchmarkError` (its message opens with the `Diagnosis:` line);
its result, status `error` with the scores and proxy counters the run produced, joins the run's
results all the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_nemo_eval.results import BenchmarkResult
from pytest_nemo_eval.runner.execute import (
    BenchmarkError,
    GateOutcome,
    benchmark_result,
    check_benchmark,
)
from pytest_nemo_eval.runner.resume import run_or_reuse
from pytest_nemo_eval.suite import Benchmark, LoadedSuite, Suite, SuiteDefaults

if TYPE_CHECKING:
    from pytest_nemo_eval.runner.plugin_state import NemoState


def run_benchmark(
    state: NemoState, spec: dict[str, Any] | Benchmark, *, suite: str = "python", defaults: dict[str, Any] | None = None,
    node: pytest.Item | None = None,
) -> GateOutcome:
    """Validate `spec` like a suite entry, run it, return the verdict (does not raise on a miss).
    With the calling test's `node`, its result joins the run's (JSON, HTML, MLflow, our hooks)."""
    from pytest_nemo_eval.runner import prerequisites

    benchmark = spec if isinstance(spec, Benchmark) else Benchmark.model_validate(spec)
    loaded = LoadedSuite(
        path=Path(f"<{suite}>"),
        sha256="",
        suite=Suite(name=suite, defaults=SuiteDefaults.model_validate(defaults or {}), benchmarks=[benchmark]),
        benchmark_lines={benchmark.name: 1},
    )
    (resolved,) = loaded.resolved()
    prepared = prerequisites.prepare(state, resolved)
    if prepared.skip:
        pytest.skip(prepared.skip)
    setup = prepared.setup
    try:
        harness = run_or_reuse(state, resolved, setup, prepared.run_level)
    except BenchmarkError as exc:  # as a suite item: an `error` result keeping what the run produced
        _record(node, benchmark_result(resolved, status="error", setup=setup, harness=exc.outcome, message=str(exc)))
        raise
    outcome = check_benchmark(state, resolved, harness)
    message = outcome.failure_message()
    outcome.result = benchmark_result(resolved, status="failed" if message else "passed", setup=setup,
                                      harness=harness, gate=outcome, message=message)
    _record(node, outcome.result)
    return outcome


def _record(node: pytest.Item | None, result: BenchmarkResult) -> None:
    """The result joins the calling test's (its call report carries them: items.ResultReporting)."""
    if node is not None:
        from pytest_nemo_eval.runner.items import API_RESULTS

        node.stash.setdefault(API_RESULTS, []).append(result)
