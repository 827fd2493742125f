"""Suite files as pytest collectors, benchmarks as pytest items.

The harness runs in the item's SETUP phase and the thresholds are checked in
its CALL phase. That split is deliberate: pytest (and its JUnit writer) report
an exception in setup as an *error* and one in call as a *failure*, so a
harness that crashed or timed out is never confused with a model that scored
too low.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_nemo_eval.gate import ScoreValue, UnknownMetricError, evaluate, name_scores, require_metrics, short_names
from pytest_nemo_eval.report import properties as props
from pytest_nemo_eval.suite import ResolvedBenchmark, SuiteError, load_suite

TIMEOUT_GRACE_S = 30.0  # pytest-timeout backstop beyond the harness's own time limit


class NemoInconclusiveWarning(UserWarning):
    """A metric's confidence interval straddles its threshold (inconclusive policy `warn`)."""


class BenchmarkFailed(AssertionError):
    """Scores missed their thresholds or regressed versus the baseline."""


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

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, self.CollectError):
            return str(excinfo.value.args[0])
        return super().repr_failure(excinfo, style)


class BenchmarkItem(pytest.Item):
    """Run one benchmark's harness against the proxy, then assert its thresholds."""

    def __init__(self, *, benchmark: ResolvedBenchmark, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.benchmark = benchmark
        self.suite_sha256 = ""
        self.line = 1
        self.scores: dict[str, ScoreValue] = {}
        self.flat_scores: dict[str, ScoreValue] = {}
        for marker in benchmark.markers:
            self.config.addinivalue_line("markers", f"{marker}: benchmark marker from a suite file")
            self.add_marker(marker)
        self.add_marker(pytest.mark.timeout(benchmark.timeout_s + TIMEOUT_GRACE_S))

    @property
    def route_name(self) -> str:
        """The proxy route of this benchmark: unique per suite and benchmark, URL-safe."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.benchmark.suite_name}.{self.benchmark.name}")[:128]

    def reportinfo(self):
        return self.path, self.line - 1, f"{self.benchmark.suite_name}::{self.benchmark.name}"

    # --- setup: run the harness -------------------------------------------------
    def setup(self) -> None:
        from pytest_nemo_eval.runner import prerequisites
        from pytest_nemo_eval.runner.plugin_state import state_of

        state = state_of(self.config)
        b = self.benchmark
        runtime = state.runtime_for(b)
        image = b.image_for_docker() if runtime == "docker" else None
        self._record_identity(runtime, image)
        lacking = prerequisites.missing(b.requires, deploying=state.deploying, runtime=runtime, image=image)
        if lacking:
            pytest.skip(f"{b.suite_name}::{b.name} needs " + "; ".join(lacking))
        from pytest_nemo_eval.harness.errors import HarnessError
        from pytest_nemo_eval.runner.resources import TargetUnavailable

        target, proxy = state.target_and_proxy()
        error = None
        try:
            route = proxy.register(self.route_name, state.adapter_for(b))
            run = self._run_harness(state, target, route, runtime, image)
        except (HarnessError, TargetUnavailable) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self._record_proxy_stats(proxy)
        if error:  # raised outside the except block: the report shows the message, not a chain
            self.user_properties.append(("nemo.error", error.splitlines()[0][:500]))
            pytest.fail(error, pytrace=False)
        self.user_properties += props.run_properties(run)
        self.flat_scores = {
            key: ScoreValue(value=s.value, stderr=s.stats.stderr, count=s.stats.count)
            for key, s in run.results.flat_scores().items()
        }
        self.scores = name_scores(self.flat_scores, b.task)
        try:
            require_metrics(self.scores, b.thresholds)
        except UnknownMetricError as exc:
            error = f"UnknownMetricError in {b.suite_name}::{b.name}: {exc}"
        if error:
            pytest.fail(error, pytrace=False)

    def _run_harness(self, state, target, route: str, runtime: str, image: str | None):
        from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness

        b = self.benchmark
        output_dir = Path(target.output_dir) / "runs" / self.route_name
        shutil.rmtree(output_dir, ignore_errors=True)  # never read a previous run's results.yml
        path = "/v1/chat/completions" if b.endpoint_type == "chat" else "/v1/completions"
        invocation = HarnessInvocation(
            harness=b.harness,
            task=b.task,
            model_id=target.model_id,
            model_url=route.rstrip("/") + path,
            model_type=b.endpoint_type,
            output_dir=output_dir,
            overrides=b.params,
            runtime=runtime,
            image=image,
            timeout_s=b.timeout_s,
            limit_samples=state.options.limit_samples or b.limit_samples,
            parallelism=b.parallelism,
            log_prefix=f"[{b.name}] ",
        )
        return run_harness(invocation)

    def _record_identity(self, runtime: str, image: str | None) -> None:
        b = self.benchmark
        self.user_properties += [
            ("nemo.benchmark", f"{b.suite_name}::{b.name}"),
            ("nemo.suite_sha256", self.suite_sha256),
            ("nemo.seed", str(b.seed)),
            ("nemo.harness", f"{b.harness}.{b.task}"),
            ("nemo.runtime", runtime),
        ] + ([("nemo.image", image)] if image else [])

    def _record_proxy_stats(self, proxy) -> None:
        try:
            stats = proxy.stats(self.route_name)
        except Exception:  # the route may not exist when registration itself failed
            return
        self.user_properties += props.proxy_properties(stats)

    # --- call: check the thresholds ---------------------------------------------
    def runtest(self) -> None:
        from pytest_nemo_eval.runner.plugin_state import state_of

        b = self.benchmark
        state = state_of(self.config)
        gate = evaluate(
            {m: self.scores[m] for m in b.thresholds},
            b.thresholds,
            confidence=b.confidence,
            inconclusive=b.inconclusive,
        )
        reported = list(b.thresholds) + [n for n in short_names(self.scores, self.flat_scores) if n not in b.thresholds]
        current = {name: self.scores[name] for name in reported}
        self.user_properties += props.metric_properties(current, gate)
        regressions = state.baseline_regressions(f"{b.suite_name}::{b.name}", current, b.thresholds)
        self.user_properties.append(("nemo.outcome", "regressed" if regressions else gate.outcome))
        problems = []
        if gate.outcome == "fail":
            problems.append(gate.message(b.name))
        if regressions:
            problems.append(
                f"benchmark {b.name!r} regressed versus baseline {state.options.baseline}:\n"
                + "\n".join(f"  {r.describe()}" for r in regressions)
            )
        if problems:
            raise BenchmarkFailed("\n".join(problems))
        if gate.outcome == "warn":
            warnings.warn(NemoInconclusiveWarning(gate.message(b.name)))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, BenchmarkFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

