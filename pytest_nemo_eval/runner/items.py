"""Suite files as pytest collectors, benchmarks as pytest items.

SETUP decides what is known before the harness runs (runtime, image, code isolation) and ends
in a SKIP when the benchmark cannot run here (a missing prerequisite, no boundary for
model-written code). CALL runs the harness and checks the thresholds, so a harness failure is
reported where it happened, in the call phase, with its one-line `Diagnosis:`
(harness/diagnosis.py) above the log tail and no Python traceback. pytest (and its JUnit
element) then says *failed* for both; our own typed result never confuses them:
`BenchmarkResult.status` (JUnit `nemo.status`, JSON, HTML, MLflow) is `error` for a harness or
benchmark error and `failed` only for missed thresholds or a regression, so a crashed harness
never reads as a model that scored too low.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

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
)
from pytest_nemo_eval.runner.resume import run_or_reuse
from pytest_nemo_eval.suite import ResolvedBenchmark, SuiteError, load_suite

if TYPE_CHECKING:
    from pytest_nemo_eval.runner import prerequisites

TIMEOUT_GRACE_S = 30.0  # pytest-timeout backstop beyond the harness's own time limit (it times the whole item)
API_RESULTS = pytest.StashKey[list[BenchmarkResult]]()  # a Python test's `nemo_benchmark` results


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
        self._prepared: Any = None
        self.line = 1
        self.setup_facts: BenchmarkSetup | None = None
        self.harness_outcome: HarnessOutcome | None = None
        self.gate_outcome: GateOutcome | None = None
        self.run_level: str | None = None  # what the harness run is told about code isolation (setup decides)
        for marker in benchmark.markers:
            self.config.addinivalue_line("markers", f"{marker}: benchmark marker from a suite file")
            self.add_marker(marker)
        self.add_marker(pytest.mark.timeout(benchmark.timeout_s + TIMEOUT_GRACE_S))

    def reportinfo(self):
        return self.path, self.line - 1, self.benchmark.id

    def prepared(self) -> "prerequisites.Prepared":
        """Where the harness runs and behind which boundary, or why it skips: decided once, before the
        deployment (a suite that will skip entirely deploys nothing) and used by setup."""
        from pytest_nemo_eval.runner import prerequisites
        from pytest_nemo_eval.runner.plugin_state import state_of

        if self._prepared is None:
            self._prepared = prerequisites.prepare(state_of(self.config), self.benchmark,
                                                   suite_sha256=self.suite_sha256)
        return self._prepared

    def setup(self) -> None:
        """Decide where the harness runs and behind which boundary; skip when the machine lacks a prerequisite."""
        prepared = self.prepared()
        self.setup_facts = prepared.setup  # a skipped benchmark's result says where it would have run
        if prepared.skip:
            pytest.skip(prepared.skip)
        self.run_level = prepared.run_level

    def runtest(self) -> None:
        """Run the harness (a `BenchmarkError` keeps what the run produced), then check the thresholds."""
        from pytest_nemo_eval.runner.plugin_state import state_of

        state = state_of(self.config)
        facts = self.setup_facts
        assert facts is not None  # setup decided the runtime, or skipped
        try:
            self.harness_outcome = run_or_reuse(state, self.benchmark, facts, self.run_level)
        except BenchmarkError as exc:
            self.harness_outcome = exc.outcome
            raise
        family = [i.benchmark for i in self.session.items if isinstance(i, BenchmarkItem)]
        outcome = self.gate_outcome = check_benchmark(state, self.benchmark, self.harness_outcome, family)
        outcome.check()
        warning = outcome.warning_message()
        if warning:
            warnings.warn(NemoInconclusiveWarning(warning))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (BenchmarkFailed, BenchmarkError)):
            return str(excinfo.value)  # the verdict, or the diagnosis above the log tail: no traceback
        return super().repr_failure(excinfo, style)

    def finish(self, report: pytest.TestReport, call: pytest.CallInfo[None]) -> BenchmarkResult:
        """Build the benchmark's result from its final report (call, or a setup that did not pass)
        and make the JUnit properties (written from the teardown report) those of the result.
        `failed` only for missed thresholds or a regression (`BenchmarkFailed`); any other exception
        (the harness, the deployment, pytest-timeout's backstop) is an `error`."""
        from pytest_nemo_eval.report.properties import to_properties

        missed = call.excinfo is not None and call.excinfo.errisinstance(BenchmarkFailed)
        status: Status = "skipped" if report.skipped else (
            ("failed" if missed else "error") if report.failed else "passed")
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
            attach(report, [item.finish(report, call)])
        elif report.when == "call" and item.stash.get(API_RESULTS, None):
            attach(report, item.stash[API_RESULTS])
        return report
