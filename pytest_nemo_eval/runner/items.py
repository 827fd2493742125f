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

from pytest_nemo_eval.results import BenchmarkResult, Status
from pytest_nemo_eval.runner.execute import (
    BenchmarkError,
    BenchmarkFailed,
    BenchmarkSetup,
    GateOutcome,
    HarnessOutcome,
    benchmark_result,
    check_benchmark,
    run_benchmark_harness,
)
from pytest_nemo_eval.suite import ResolvedBenchmark, SuiteError, load_suite

TIMEOUT_GRACE_S = 30.0
API_RESULTS = pytest.StashKey[list[BenchmarkResult]]()  # a Python test's `nemo_benchmark` results  # pytest-timeout backstop beyond the harness's own time limit


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
        self.setup_facts: BenchmarkSetup | None = None
        self.harness_outcome: HarnessOutcome | None = None
        self.gate_outcome: GateOutcome | None = None
        for marker in benchmark.markers:
            self.config.addinivalue_line("markers", f"{marker}: benchmark marker from a suite file")
            self.add_marker(marker)
        self.add_marker(pytest.mark.timeout(benchmark.timeout_s + TIMEOUT_GRACE_S))

    def reportinfo(self):
        return self.path, self.line - 1, self.benchmark.id

    def setup(self) -> None:
        """Skip when the machine lacks a prerequisite; else run the harness (errors are setup errors)."""
        from pytest_nemo_eval.runner import prerequisites
        from pytest_nemo_eval.runner.plugin_state import state_of

        state = state_of(self.config)
        b = self.benchmark
        runtime, runtime_reason = state.runtime_choice(b)
        image = b.image_for_docker() if runtime == "docker" else None
        self.setup_facts = BenchmarkSetup(
            runtime=runtime, runtime_reason=runtime_reason, image=image, suite_sha256=self.suite_sha256)
        lacking = prerequisites.missing(b.requires, deploying=state.deploying, runtime=runtime, image=image)
        if lacking:
            pytest.skip(f"{b.id} needs " + "; ".join(lacking))
        isolation = prerequisites.code_isolation(
            b, runtime=runtime, allow_unsandboxed=state.options.allow_unsandboxed_code)
        if isolation.problem:
            pytest.skip(f"{b.id}: {isolation.problem}")
        self.setup_facts = self.setup_facts.model_copy(update={"code_isolation": isolation.level})
        try:
            self.harness_outcome = run_benchmark_harness(state, b, runtime, image, isolation.run_level)
        except BenchmarkError as exc:
            error = str(exc)
        else:
            return
        pytest.fail(error, pytrace=False)

    def runtest(self) -> None:
        from pytest_nemo_eval.runner.plugin_state import state_of

        assert self.harness_outcome is not None  # setup ran the harness or failed
        outcome = self.gate_outcome = check_benchmark(state_of(self.config), self.benchmark, self.harness_outcome)
        outcome.check()
        if outcome.gate.outcome == "warn":
            warnings.warn(NemoInconclusiveWarning(outcome.gate.message(self.benchmark.name)))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, BenchmarkFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def finish(self, report: pytest.TestReport) -> BenchmarkResult:
        """Build the benchmark's result from its final report (call, or a setup that did not pass)
        and make the JUnit properties (written from the teardown report) those of the result."""
        from pytest_nemo_eval.report.properties import to_properties

        status: Status = "skipped" if report.skipped else (
            ("failed" if report.when == "call" else "error") if report.failed else "passed")
        message = None
        if report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif report.failed:
            message = report.longreprtext.strip()[:4000] or None
        result = benchmark_result(self.benchmark, status=status, setup=self.setup_facts,
                                  harness=self.harness_outcome, gate=self.gate_outcome, message=message)
        self.user_properties[:] = [p for p in self.user_properties if not str(p[0]).startswith("nemo.")]
        self.user_properties += to_properties(result)
        return result


class ResultReporting:
    """Shared by the controller's and the workers' hooks: a benchmark's final report carries its
    `BenchmarkResult` as one JSON document (pytest serializes extra report attributes for xdist)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report: pytest.TestReport = yield
        final = report.when == "call" or (report.when == "setup" and not report.passed)
        from pytest_nemo_eval.report.summary import attach

        if isinstance(item, BenchmarkItem) and final:
            attach(report, [item.finish(report)])
        elif report.when == "call" and item.stash.get(API_RESULTS, None):
            attach(report, item.stash[API_RESULTS])
        return report
