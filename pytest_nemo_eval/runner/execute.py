"""Run one benchmark: register its proxy route, run its harness, name its scores,
check its thresholds and the baseline. Used by suite items and by the
`nemo_benchmark` fixture, so both behave the same."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from pytest_nemo_eval.gate import Comparison, GateResult, ScoreValue, evaluate, name_scores, require_metrics, short_names
from pytest_nemo_eval.report import properties as props
from pytest_nemo_eval.suite import ResolvedBenchmark


class BenchmarkError(Exception):
    """The benchmark could not produce scores (harness error, unreachable model,
    threshold on an unknown metric): an *error*, never a failed threshold."""


class BenchmarkFailed(AssertionError):
    """Scores missed their thresholds or regressed versus the baseline."""


class HarnessOutcome(BaseModel):
    """Scores of a finished harness run, by every name a threshold may use."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    scores: dict[str, ScoreValue]
    flat_scores: dict[str, ScoreValue]
    properties: list[tuple[str, str]]


class GateOutcome(BaseModel):
    """The verdict on a benchmark's scores."""

    benchmark: str
    gate: GateResult
    regressions: list[Comparison]
    scores: dict[str, ScoreValue]  # the reported metrics (thresholded first)
    properties: list[tuple[str, str]]
    baseline_path: str | None = None

    @property
    def outcome(self) -> str:
        return "regressed" if self.regressions else self.gate.outcome

    def failure_message(self) -> str | None:
        """None when the benchmark passes; else every metric and every regression."""
        problems = []
        if self.gate.outcome == "fail":
            problems.append(self.gate.message(self.benchmark))
        if self.regressions:
            problems.append(
                f"benchmark {self.benchmark!r} regressed versus baseline {self.baseline_path}:\n"
                + "\n".join(f"  {r.describe()}" for r in self.regressions)
            )
        return "\n".join(problems) or None

    def check(self) -> None:
        """Raise `BenchmarkFailed` with the full message when the benchmark fails."""
        message = self.failure_message()
        if message:
            raise BenchmarkFailed(message)


def route_name(benchmark: ResolvedBenchmark) -> str:
    """The proxy route: unique per suite and benchmark, URL-safe."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{benchmark.suite_name}.{benchmark.name}")[:128]


def run_benchmark_harness(
    state, benchmark: ResolvedBenchmark, runtime: str, image: str | None, code_isolation: str | None = None
) -> HarnessOutcome:
    """Run the harness against the benchmark's proxy route; raises `BenchmarkError`.

    `code_isolation` (prerequisites.code_isolation) is handed to the run (the builtin harness's override,
    the bubblewrap sandbox around an eval-factory harness), so the level decided and reported is the one used."""
    from pytest_nemo_eval.harness.errors import HarnessError
    from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness
    from pytest_nemo_eval.runner.judge import judge_route
    from pytest_nemo_eval.runner.resources import TargetUnavailable

    name = route_name(benchmark)
    error = None
    try:
        target, proxy = state.target_and_proxy()
        route = proxy.register(name, state.adapter_for(benchmark))
        output_dir = Path(target.output_dir) / "runs" / name
        shutil.rmtree(output_dir, ignore_errors=True)  # never read a previous run's results.yml
        path = "/v1/chat/completions" if benchmark.endpoint_type == "chat" else "/v1/completions"
        with judge_route(benchmark, name, target=target, proxy=proxy, adapter=state.adapter_for(benchmark),
                         output_dir=output_dir / "judge") as judge:
            run = run_harness(
                HarnessInvocation(
                    harness=benchmark.harness,
                    task=benchmark.task,
                    model_id=target.model_id,
                    model_url=route.rstrip("/") + path,
                    model_type=benchmark.endpoint_type,
                    output_dir=output_dir,
                    overrides={**benchmark.params, **judge.overrides},
                    code_isolation=code_isolation,
                    runtime=runtime,
                    image=image,
                    timeout_s=benchmark.timeout_s,
                    limit_samples=state.options.limit_samples or benchmark.limit_samples,
                    parallelism=benchmark.parallelism,
                    log_prefix=f"[{benchmark.name}] ",
                    mounts=benchmark.mounts,
                    env=benchmark.env,
                    log_notes=[state.runtime_choice(benchmark)[1]],
                )
            )
    except (HarnessError, TargetUnavailable) as exc:
        error = f"{type(exc).__name__}: {exc}"
    stats = _proxy_stats(state, name) + (judge.properties() if error is None else [])
    if error:  # raised outside the except block: the report shows the message, not a chain
        raise BenchmarkError(error)
    flat = {
        key: ScoreValue(value=s.value, stderr=s.stats.stderr, count=s.stats.count)
        for key, s in run.results.flat_scores().items()
    }
    scores = name_scores(flat, run.results.harness_task or benchmark.task)
    require_metrics_or_error(benchmark, scores)
    return HarnessOutcome(scores=scores, flat_scores=flat, properties=stats + props.run_properties(run))


def _proxy_stats(state, name: str) -> list[tuple[str, str]]:
    from pytest_nemo_eval.runner.resources import ProxyControl

    try:
        return props.proxy_properties(ProxyControl(state.target.proxy_url).stats(name))
    except Exception:  # no target or no route when registration itself failed
        return []


def require_metrics_or_error(benchmark: ResolvedBenchmark, scores: dict[str, ScoreValue]) -> None:
    from pytest_nemo_eval.gate import UnknownMetricError

    try:
        require_metrics(scores, benchmark.thresholds)
    except UnknownMetricError as exc:
        message = f"UnknownMetricError in {benchmark.suite_name}::{benchmark.name}: {exc}"
    else:
        return
    raise BenchmarkError(message)


def check_benchmark(state, benchmark: ResolvedBenchmark, harness: HarnessOutcome) -> GateOutcome:
    """Thresholds (with confidence mode) and the baseline comparison."""
    thresholds = benchmark.thresholds
    gate = evaluate(
        {m: harness.scores[m] for m in thresholds},
        thresholds,
        confidence=benchmark.confidence,
        inconclusive=benchmark.inconclusive,
    )
    extra = [n for n in short_names(harness.scores, harness.flat_scores) if n not in thresholds]
    reported = {name: harness.scores[name] for name in [*thresholds, *extra]}
    benchmark_id = f"{benchmark.suite_name}::{benchmark.name}"
    regressions = state.baseline_regressions(benchmark_id, reported, thresholds)
    outcome = GateOutcome(
        benchmark=benchmark.name,
        gate=gate,
        regressions=regressions,
        scores=reported,
        properties=props.metric_properties(reported, gate),
        baseline_path=str(state.options.baseline) if state.options.baseline else None,
    )
    outcome.properties.append(("nemo.outcome", outcome.outcome))
    return outcome
