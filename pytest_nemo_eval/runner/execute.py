"""Run one benchmark: register its proxy route, run its harness, name its scores,
check its thresholds and the baseline, and build its `BenchmarkResult`. Used by suite
items and by the `nemo_benchmark` fixture, so both behave the same."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from pytest_nemo_eval.gate import Comparison, GateResult, ScoreValue, evaluate, name_scores, require_metrics, short_names
from pytest_nemo_eval.report.properties import PROXY_FIELDS, to_properties
from pytest_nemo_eval.results import BenchmarkResult, MetricResult, Status, direction_of
from pytest_nemo_eval.suite import ResolvedBenchmark, Threshold

if TYPE_CHECKING:
    from pytest_nemo_eval.runner.plugin_state import NemoState


class BenchmarkError(Exception):
    """The benchmark could not produce scores (harness error, unreachable model,
    threshold on an unknown metric): an *error*, never a failed threshold."""


class BenchmarkFailed(AssertionError):
    """Scores missed their thresholds or regressed versus the baseline."""


class BenchmarkSetup(BaseModel):
    """What was decided before the harness ran: where it runs and behind which boundary."""

    runtime: str
    runtime_reason: str
    image: str | None = None
    code_isolation: str | None = None
    suite_sha256: str | None = None


class HarnessOutcome(BaseModel):
    """Scores of a finished harness run, by every name a threshold may use, and its facts."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    scores: dict[str, ScoreValue]
    flat_scores: dict[str, ScoreValue]
    duration_s: float | None = None
    samples: int | None = None
    image_digest: str | None = None
    proxy: dict[str, float] = {}
    judge: dict[str, str] = {}
    samples_file: str | None = None
    proxy_log: str | None = None
    results_file: str | None = None


class GateOutcome(BaseModel):
    """The verdict on a benchmark's scores."""

    benchmark: str  # the benchmark's name (messages); `benchmark_id` is the join key
    benchmark_id: str
    gate: GateResult
    comparisons: list[Comparison]  # every metric shared with the baseline
    scores: dict[str, ScoreValue]  # the reported metrics (thresholded first)
    metrics: dict[str, MetricResult]
    baseline_path: str | None = None
    result: BenchmarkResult | None = None  # set by the Python API (runner/api.py)

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regressed]

    @property
    def outcome(self) -> str:
        return "regressed" if self.regressions else self.gate.outcome

    @property
    def properties(self) -> list[tuple[str, str]]:
        """The JUnit properties of this benchmark's result (the Python API's)."""
        return to_properties(self.result) if self.result is not None else []

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
    state: NemoState, benchmark: ResolvedBenchmark, runtime: str, image: str | None, code_isolation: str | None = None
) -> HarnessOutcome:
    """Run the harness against the benchmark's proxy route; raises `BenchmarkError`.

    `code_isolation` (prerequisites.code_isolation) is handed to the run (the builtin harness's override,
    the bubblewrap sandbox around an eval-factory harness), so the level decided and reported is the one used."""
    from pytest_nemo_eval.harness.errors import HarnessError
    from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness
    from pytest_nemo_eval.runner.deployment_watch import run_watched
    from pytest_nemo_eval.runner.judge import judge_route
    from pytest_nemo_eval.runner.resources import TargetUnavailable

    name = route_name(benchmark)
    error = None
    try:
        target, proxy = state.target_and_proxy()
        adapter = state.adapter_for(benchmark)
        route = proxy.register(name, adapter)
        output_dir = Path(target.output_dir) / "runs" / name
        path = "/v1/chat/completions" if benchmark.endpoint_type == "chat" else "/v1/completions"
        judge_dir = output_dir.parent / f"{name}.judge"  # beside the run dir, which each attempt clears

        def run_once():
            shutil.rmtree(output_dir, ignore_errors=True)  # never read a previous run's results.yml
            return run_harness(HarnessInvocation(
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
                parallelism=benchmark.parallelism or target.default_parallelism,  # replicas: resources.py
                log_prefix=f"[{benchmark.name}] ",
                mounts=benchmark.mounts,
                env=benchmark.env,
                log_notes=[state.runtime_choice(benchmark)[1]],
            ))

        with judge_route(benchmark, name, target=target, proxy=proxy, adapter=adapter,
                         output_dir=judge_dir) as judge:
            run = run_watched(target.output_dir, run_once)  # a deployment that died: runner/deployment_watch.py
    except (HarnessError, TargetUnavailable) as exc:
        error = f"{type(exc).__name__}: {exc}"
    stats = _proxy_stats(state, name)
    if error:  # raised outside the except block: the report shows the message, not a chain
        raise BenchmarkError(error)
    harness_scores = run.results.flat_scores()
    counts = [s.stats.count for s in harness_scores.values() if s.stats.count is not None]
    flat = {
        key: ScoreValue(value=s.value, stderr=s.stats.stderr, count=s.stats.count)
        for key, s in harness_scores.items()
    }
    scores = name_scores(flat, run.results.harness_task or benchmark.task)
    require_metrics_or_error(benchmark, scores)
    return HarnessOutcome(
        scores=scores,
        flat_scores=flat,
        duration_s=run.duration_s,
        samples=max(counts) if counts else None,
        image_digest=run.image_digest,
        proxy=stats,
        judge={key.removeprefix("nemo.judge."): value for key, value in judge.properties()},
        samples_file=_per_sample_file(run.output_dir),
        proxy_log=_proxy_log(target.output_dir, name),
        results_file=str((run.output_dir / "results.yml").resolve()) if (run.output_dir / "results.yml").is_file() else None,
    )


def _proxy_log(output_dir: str, route: str) -> str | None:
    """The proxy's request/response log folder of this route (resources.PROXY_LOG_DIR), if it logged."""
    from pytest_nemo_eval.runner.resources import PROXY_LOG_DIR

    folder = Path(output_dir) / PROXY_LOG_DIR / route
    return str(folder.resolve()) if folder.is_dir() else None


def _per_sample_file(output_dir: Path) -> str | None:
    """samples.py's documented per-sample file of this run; None when the harness logged none."""
    from pytest_nemo_eval.samples import collect_samples

    try:
        path = collect_samples(output_dir)
    except (OSError, ValueError, KeyError, TypeError):  # a harness's odd log must never cost the scores
        return None
    return str(path.resolve()) if path is not None else None


def _proxy_stats(state: NemoState, name: str) -> dict[str, float]:
    """The proxy route's counters (ProxyStats), numbers only."""
    from pytest_nemo_eval.runner.resources import ProxyControl

    try:
        stats = ProxyControl(state.target.proxy_url).stats(name)  # type: ignore[union-attr]
    except Exception:  # no target or no route when registration itself failed
        return {}
    return {key: float(stats[key]) for key in PROXY_FIELDS if isinstance(stats.get(key), (int, float))}


def require_metrics_or_error(benchmark: ResolvedBenchmark, scores: dict[str, ScoreValue]) -> None:
    from pytest_nemo_eval.gate import UnknownMetricError

    try:
        require_metrics(scores, benchmark.thresholds)
    except UnknownMetricError as exc:
        message = f"UnknownMetricError in {benchmark.id}: {exc}"
    else:
        return
    raise BenchmarkError(message)


def metric_results(
    scores: dict[str, ScoreValue], gate: GateResult, thresholds: dict[str, Threshold]
) -> dict[str, MetricResult]:
    """value/stderr for every reported metric; threshold, direction, verdict and interval for gated ones."""
    verdicts = {v.metric: v for v in gate.verdicts}
    out = {}
    for name, score in scores.items():
        verdict = verdicts.get(name)
        threshold = thresholds.get(name)
        out[name] = MetricResult(
            value=score.value,
            stderr=score.stderr,
            threshold=threshold,
            direction=direction_of(threshold),
            verdict=verdict.verdict if verdict else None,
            ci_low=verdict.ci_low if verdict else None,
            ci_high=verdict.ci_high if verdict else None,
        )
    return out


def check_benchmark(state: NemoState, benchmark: ResolvedBenchmark, harness: HarnessOutcome) -> GateOutcome:
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
    metrics = metric_results(reported, gate, thresholds)
    return GateOutcome(
        benchmark=benchmark.name,
        benchmark_id=benchmark.id,
        gate=gate,
        comparisons=state.baseline_comparisons(benchmark.id, metrics, harness.samples_file),
        scores=reported,
        metrics=metrics,
        baseline_path=str(state.options.baseline) if state.options.baseline else None,
    )


def benchmark_result(
    benchmark: ResolvedBenchmark,
    *,
    status: Status,
    setup: BenchmarkSetup | None = None,
    harness: HarnessOutcome | None = None,
    gate: GateOutcome | None = None,
    message: str | None = None,
) -> BenchmarkResult:
    """THE place a `BenchmarkResult` is built, from what each phase of the benchmark produced."""
    return BenchmarkResult(
        benchmark=benchmark.id,
        status=status,
        outcome=gate.outcome if gate is not None else None,  # type: ignore[arg-type]
        metrics=gate.metrics if gate is not None else {},
        message=message,
        harness=f"{benchmark.harness}.{benchmark.task}",
        runtime=setup.runtime if setup else None,
        runtime_reason=setup.runtime_reason if setup else None,
        image=setup.image if setup else None,
        code_isolation=setup.code_isolation if setup else None,
        suite_sha256=setup.suite_sha256 if setup else None,
        seed=benchmark.seed,
        samples=harness.samples if harness else None,
        duration_s=harness.duration_s if harness else None,
        image_digest=harness.image_digest if harness else None,
        proxy=harness.proxy if harness else {},
        judge=harness.judge if harness else {},
        samples_file=harness.samples_file if harness else None,
        proxy_log=harness.proxy_log if harness else None,
        results_file=harness.results_file if harness else None,
        baseline=gate.comparisons if gate is not None else [],
    )
