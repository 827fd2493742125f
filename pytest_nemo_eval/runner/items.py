"""Suite files as pytest collectors, benchmarks as pytest items.

The harness runs in the item's SETUP phase and the thresholds are checked in
its CALL phase. That split is deliberate: pytest (and its JUnit writer) report
an exception in setup as an *error* and one in call as a *failure*, so a
harness that crashed or timed out is never confused with a model that scored
too low.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pytest_nemo_eval.runner.execute import (
    BenchmarkError,
    BenchmarkFailed,
    HarnessOutcome,
    check_benchmark,
    run_benchmark_harness,
)
from pytest_nemo_eval.suite import ResolvedBenchmark, SuiteError, load_suite

TIMEOUT_GRACE_S = 30.0  # pytest-timeout backstop beyond the harness's own time limit


class NemoInconclusiveWarning(UserWarning):
    """A metric's confidence interval straddles its threshold (inconclusive policy `warn`)."""


class SuiteFile(pytest.File):
    """A suite YAML file; one `BenchmarkItem` per benchmark."""

    def collect(self):
        try:
            loaded = load_suite(self.path)
        except SuiteError as exc:
            raise self.CollectError(str(exc)) from None
        for benchmark in loaded.resolved():
            item = BenchmarkItem.from_parent(self, name=benchmark.name, benchmark=benchmark)
            item.suite_sha256 = loaded.sha256
            item.line = loaded.benchmark_lines[benchmark.name]
            yield item


class BenchmarkItem(pytest.Item):
    """Run one benchmark's harness against the proxy, then assert its thresholds."""

    def __init__(self, *, benchmark: ResolvedBenchmark, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.benchmark = benchmark
        self.suite_sha256 = ""
        self.line = 1
        self.harness_outcome: HarnessOutcome | None = None
        for marker in benchmark.markers:
            self.config.addinivalue_line("markers", f"{marker}: benchmark marker from a suite file")
            self.add_marker(marker)
        self.add_marker(pytest.mark.timeout(benchmark.timeout_s + TIMEOUT_GRACE_S))

    def reportinfo(self):
        return self.path, self.line - 1, f"{self.benchmark.suite_name}::{self.benchmark.name}"

    def setup(self) -> None:
        """Skip when the machine lacks a prerequisite; else run the harness (errors are setup errors)."""
        from pytest_nemo_eval.runner import prerequisites
        from pytest_nemo_eval.runner.plugin_state import state_of

        state = state_of(self.config)
        b = self.benchmark
        runtime, runtime_reason = state.runtime_choice(b)
        image = b.image_for_docker() if runtime == "docker" else None
        self.user_properties += [
            ("nemo.benchmark", f"{b.suite_name}::{b.name}"),
            ("nemo.suite_sha256", self.suite_sha256),
            ("nemo.seed", str(b.seed)),
            ("nemo.harness", f"{b.harness}.{b.task}"),
            ("nemo.runtime", runtime),
            ("nemo.runtime_reason", runtime_reason),
        ] + ([("nemo.image", image)] if image else [])
        lacking = prerequisites.missing(b.requires, deploying=state.deploying, runtime=runtime, image=image)
        if lacking:
            pytest.skip(f"{b.suite_name}::{b.name} needs " + "; ".join(lacking))
        isolation = prerequisites.code_isolation(
            b, runtime=runtime, allow_unsandboxed=state.options.allow_unsandboxed_code)
        if isolation.problem:
            pytest.skip(f"{b.suite_name}::{b.name}: {isolation.problem}")
        self.user_properties.append(("nemo.code_isolation", isolation.level))
        try:
            self.harness_outcome = run_benchmark_harness(state, b, runtime, image, isolation.run_level)
        except BenchmarkError as exc:
            error = str(exc)
        else:
            self.user_properties += self.harness_outcome.properties
            return
        self.user_properties.append(("nemo.error", error.splitlines()[0][:500]))
        pytest.fail(error, pytrace=False)

    def runtest(self) -> None:
        from pytest_nemo_eval.runner.plugin_state import state_of

        outcome = check_benchmark(state_of(self.config), self.benchmark, self.harness_outcome)
        self.user_properties += outcome.properties
        outcome.check()
        if outcome.gate.outcome == "warn":
            warnings.warn(NemoInconclusiveWarning(outcome.gate.message(self.benchmark.name)))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, BenchmarkFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)
