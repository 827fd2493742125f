"""Run one benchmark: register its proxy route, run its harness, name its scores,
check its thresholds and the baseline, and build its `BenchmarkResult`. Used by suite
items and by the `nemo_benchmark` fixture, so both behave the same."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from pytest_nemo_eval.gate import Comparison, GateResult, ScoreValue, evaluate, name_scores, require_metrics, short_names
from pytest_nemo_eval.report.properties import PROXY_FIELDS, to_properties
from pytest_nemo_eval.results import BenchmarkResult, MetricResult, Status, direction_of
from pytest_nemo_eval.runner.prerequisites import BenchmarkSetup
from pytest_nemo_eval.suite import ResolvedBenchmark, Threshold

if TYPE_CHECKING:
    from pytest_nemo_eval.harness.errors import HarnessError
    from pytest_nemo_eval.harness.results import EvalResults
    from pytest_nemo_eval.runner.judge import JudgeRoute
    from pytest_nemo_eval.runner.plugin_state import NemoState
    from pytest_nemo_eval.runner.resources import TargetUnavailable


class BenchmarkError(Exception):
    """The benchmark could not be judged (harness error, unreachable model, threshold on an
    unknown metric): an *error*, never a failed threshold.

    `outcome` is what the run produced before it errored: the proxy route's counters always (the
    evidence for the diagnosis), scores when the harness wrote any; None when no route existed."""

    def __init__(self, message: str, outcome: HarnessOutcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


class BenchmarkFailed(AssertionError):
    """Scores missed their thresholds or regressed versus the baseline."""


class HarnessOutcome(BaseModel):
    """Scores of a finished harness run, by every name a threshold may use, and its facts."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    scores: dict[str, ScoreValue]
    flat_scores: dict[str, ScoreValue]
    duration_s: float | None = None
    samples: int | None = None
    sampling: str | None = None  # which samples the harness evaluated (harness/invocation.describe_sampling)
    image_digest: str | None = None
    proxy: dict[str, float] = {}
    judge: dict[str, str] = {}
    samples_file: str | None = None
    proxy_log: str | None = None
    results_file: str | None = None
    early_stop: dict[str, Any] | None = None  # the builtin harness's early_stop.json, when it watched a metric
    reused_from: str | None = None  # the stored result this outcome was reused from (runner/resume.py)


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
    lenient: bool = False  # --nemo-gate-lenient: a supporting benchmark's NO-GO warns

    @property
    def regressions(self) -> list[Comparison]:
        """NO-GO comparisons that fail the benchmark (gate_policy.effect)."""
        return [c for c in self.comparisons if c.regressed]

    def baseline_effect(self, effect: str) -> list[Comparison]:
        """The comparisons whose verdict has this effect on the outcome (fail | warn | pass)."""
        from pytest_nemo_eval.gate_policy import effect as effect_of

        return [c for c in self.comparisons if c.decision is not None and effect_of(
            c.decision, lenient=self.lenient, inconclusive=self.gate.inconclusive_policy) == effect]

    @property
    def outcome(self) -> str:
        if self.regressions:
            return "regressed"
        if self.gate.outcome == "pass" and self.baseline_effect("fail"):
            return "fail"  # INCONCLUSIVE versus the baseline under `inconclusive: fail`
        if self.gate.outcome == "pass" and self.baseline_effect("warn"):
            return "warn"
        return self.gate.outcome

    def warning_message(self) -> str | None:
        """What a passing benchmark warns about: inconclusive thresholds, baseline verdicts that only warn."""
        parts = [self.gate.message(self.benchmark)] if self.gate.outcome == "warn" else []
        warned = self.baseline_effect("warn")
        if warned:
            parts.append(f"benchmark {self.benchmark!r} versus baseline {self.baseline_path} (warning only):\n"
                         + "\n".join(f"  {c.describe()}" for c in warned))
        return "\n".join(parts) or None

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
        undecided = [c for c in self.baseline_effect("fail") if not c.regressed]
        if undecided:
            problems.append(
                f"benchmark {self.benchmark!r} is INCONCLUSIVE versus baseline {self.baseline_path} "
                f"(inconclusive policy: {self.gate.inconclusive_policy}; collect more samples, or see "
                "`nemo-eval-report plan`):\n" + "\n".join(f"  {c.describe()}" for c in undecided)
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
    from pytest_nemo_eval.harness.errors import HarnessError, HarnessFailed, HarnessTimeout
    from pytest_nemo_eval.harness.invocation import describe_sampling
    from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness
    from pytest_nemo_eval.runner.deployment_watch import run_watched
    from pytest_nemo_eval.runner.judge import judge_route
    from pytest_nemo_eval.runner.resources import TargetUnavailable

    name = route_name(benchmark)
    counted_before: dict[str, float] = {}  # the route's counters when the last attempt started
    error: HarnessError | TargetUnavailable | None = None
    output_dir: Path | None = None
    judge: JudgeRoute | None = None
    started: float | None = None
    try:
        target, proxy = state.target_and_proxy()
        adapter = state.adapter_for(benchmark)
        route = proxy.register(name, with_chat_template_kwargs(adapter, benchmark))  # the judge's route: without
        output_dir = Path(target.output_dir) / "runs" / name
        path = "/v1/chat/completions" if benchmark.endpoint_type == "chat" else "/v1/completions"
        judge_dir = output_dir.parent / f"{name}.judge"  # beside the run dir, which each attempt clears

        def run_once():
            shutil.rmtree(output_dir, ignore_errors=True)  # never read a previous run's results.yml
            counted_before.update(_numbers(_route_stats(state, name)))  # an attempt cut short by a lost deployment
            return run_harness(HarnessInvocation(
                harness=benchmark.harness,
                task=benchmark.task,
                model_id=target.model_id,
                model_url=route.rstrip("/") + path,
                model_type=benchmark.endpoint_type,
                output_dir=output_dir,
                overrides={**benchmark.params, **judged.overrides},
                code_isolation=code_isolation,
                runtime=runtime,
                image=image,
                timeout_s=benchmark.timeout_s,
                limit_samples=state.options.limit_samples or benchmark.limit_samples,
                sample_seed=state.options.sample_seed,
                parallelism=benchmark.parallelism or target.default_parallelism,  # replicas: resources.py
                log_prefix=f"[{benchmark.name}] ",
                mounts=benchmark.mounts,
                env=benchmark.env,
                log_notes=[state.runtime_choice(benchmark)[1]],
            ))

        started, began = time.monotonic(), time.time()
        with judge_route(benchmark, name, target=target, proxy=proxy, adapter=adapter,
                         output_dir=judge_dir) as judged:
            judge = judged  # its counters are read even when the harness fails
            run = run_watched(target.output_dir, run_once)  # a deployment that died: runner/deployment_watch.py
    except (HarnessError, TargetUnavailable) as exc:
        error = exc
    route_stats = _route_stats(state, name)
    stats = _numbers(route_stats)
    judge_facts = {key.removeprefix("nemo.judge."): value for key, value in judge.properties()} if judge else {}
    if error is not None:  # raised outside the except block: the report shows the message, not a chain
        results = _results_left_behind(output_dir) if isinstance(error, (HarnessFailed, HarnessTimeout)) else None
        partial = _outcome(benchmark, results, output_dir, stats=stats, judge=judge_facts,
                           duration_s=time.monotonic() - started if started is not None else None,
                           proxy_log=_proxy_log(state.target.output_dir, name) if state.target else None)
        raise BenchmarkError(error_message(error), partial)
    outcome = _outcome(benchmark, run.results, run.output_dir, stats=stats, judge=judge_facts,
                       duration_s=run.duration_s, image_digest=run.image_digest,
                       proxy_log=_proxy_log(target.output_dir, name))
    outcome.sampling = describe_sampling(benchmark.harness, state.options.limit_samples or benchmark.limit_samples,
                                         state.options.sample_seed)
    require_metrics_or_error(benchmark, outcome)
    attempt = {key: value - counted_before.get(key, 0.0) for key, value in stats.items()}
    require_answered_requests(benchmark, attempt, outcome, last_error=route_stats.get("last_error"))
    require_untripped_route(benchmark, _proxy_log(target.output_dir, name), began, outcome)
    require_finished_thoughts(benchmark, attempt, outcome)
    return outcome


def with_chat_template_kwargs(adapter: dict[str, Any], benchmark: ResolvedBenchmark) -> dict[str, Any]:
    """The benchmark route's adapter block with the suite's `chat_template_kwargs` (over the block's own
    `chat_template_kwargs.kwargs`); a judge's route keeps the block without them (another model, or an API
    that refuses the field)."""
    if not benchmark.chat_template_kwargs:
        return adapter
    block = adapter.get("chat_template_kwargs")
    own = block.get("kwargs") if isinstance(block, dict) and isinstance(block.get("kwargs"), dict) else {}
    return {**adapter, "chat_template_kwargs": {"kwargs": {**own, **benchmark.chat_template_kwargs}}}


def error_message(exc: Exception) -> str:
    """`<Type>: <message>`; a message that opens with the log's one-line `Diagnosis:` (harness/errors.py)
    keeps it as the first line, so the test report and JUnit's `nemo.error` lead with the cause."""
    text = str(exc)
    first, _, rest = text.partition("\n")
    if first.startswith("Diagnosis: "):
        return f"{first}\n{type(exc).__name__}: {rest}" if rest else first
    return f"{type(exc).__name__}: {text}"


def _results_left_behind(output_dir: Path | None) -> EvalResults | None:
    """The results.yml a harness wrote before it exited non-zero or ran out of time, when it parses;
    kept as evidence of what it measured (the benchmark still errors)."""
    from pytest_nemo_eval.harness.errors import ResultsError
    from pytest_nemo_eval.harness.results import RESULTS_FILE, load_results

    if output_dir is None or not (output_dir / RESULTS_FILE).is_file():
        return None
    try:
        return load_results(output_dir)
    except ResultsError:
        return None


def _outcome(
    benchmark: ResolvedBenchmark, results: EvalResults | None, output_dir: Path | None, *, stats: dict[str, float],
    judge: dict[str, str], duration_s: float | None, proxy_log: str | None, image_digest: str | None = None,
) -> HarnessOutcome:
    """THE place a harness run's `HarnessOutcome` is built, from its results (None when it left none)."""
    from pytest_nemo_eval.harness.results import RESULTS_FILE

    harness_scores = results.flat_scores() if results is not None else {}
    counts = [s.stats.count for s in harness_scores.values() if s.stats.count is not None]
    flat = {
        key: ScoreValue(value=s.value, stderr=s.stats.stderr, count=s.stats.count)
        for key, s in harness_scores.items()
    }
    results_file = output_dir / RESULTS_FILE if output_dir is not None else None
    return HarnessOutcome(
        scores=name_scores(flat, (results.harness_task if results else None) or benchmark.task) if flat else {},
        flat_scores=flat,
        duration_s=duration_s,
        samples=max(counts) if counts else None,
        image_digest=image_digest,
        proxy=stats,
        judge=judge,
        samples_file=_per_sample_file(output_dir) if results is not None and output_dir is not None else None,
        proxy_log=proxy_log,
        results_file=str(results_file.resolve()) if results is not None and results_file and results_file.is_file()
        else None,
        early_stop=_early_stop_record(output_dir) if results is not None else None,
    )


def _early_stop_record(output_dir: Path | None) -> dict[str, Any] | None:
    from pytest_nemo_eval.harness.builtin.early_stop import read_record

    record = read_record(output_dir)
    return record.model_dump() if record is not None else None


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


def _route_stats(state: NemoState, name: str) -> dict[str, Any]:
    """The proxy route's stats (ProxyStats: counters and the last error); empty when there are none."""
    from pytest_nemo_eval.runner.resources import ProxyControl

    try:
        return ProxyControl(state.target.proxy_url).stats(name)  # type: ignore[union-attr,no-any-return]
    except Exception:  # no target, no route when registration itself failed, or the proxy is gone
        return {}


def _numbers(stats: dict[str, Any]) -> dict[str, float]:
    """The counters among a route's stats, as floats."""
    return {key: float(stats[key]) for key in PROXY_FIELDS if isinstance(stats.get(key), (int, float))}


def require_metrics_or_error(benchmark: ResolvedBenchmark, harness: HarnessOutcome) -> None:
    """`BenchmarkError` (carrying the run's scores and counters) when a threshold names no metric it produced."""
    from pytest_nemo_eval.gate import UnknownMetricError

    try:
        require_metrics(harness.scores, benchmark.thresholds)
    except UnknownMetricError as exc:
        message = f"UnknownMetricError in {benchmark.id}: {exc}"
    else:
        return
    raise BenchmarkError(message, harness)


def require_answered_requests(benchmark: ResolvedBenchmark, attempt: dict[str, float], harness: HarnessOutcome,
                              last_error: str | None) -> None:
    """`BenchmarkError` (keeping the scores as evidence) when more of the model's requests ended in an
    error than the benchmark's `max_request_errors` allows: harnesses score an error reply as a wrong
    answer (BFCL, refused tools: 3 of 3 errors, still 11.1%), so such scores say nothing about the model.
    `attempt`: the route's counters of the attempt that scored (a rerun after a lost deployment is judged
    on its own requests, not on the one cut off by the loss)."""
    requests, errors = attempt.get("requests", 0.0), attempt.get("errors", 0.0)
    if not requests or errors / requests <= benchmark.max_request_errors:
        return
    raise BenchmarkError(
        f"Diagnosis: the model answered {errors:.0f} of {requests:.0f} requests with an error (last: "
        f"{last_error or 'unknown'}); the harness scored those as answers, so {benchmark.id}'s scores say "
        "nothing about the model. Fix what the requests ask for (the proxy log has each one), or allow a share "
        f"with `max_request_errors: {min(1.0, round(errors / requests + 0.005, 2))}` on the benchmark.", harness)


def require_untripped_route(benchmark: ResolvedBenchmark, log_folder: str | None, began: float,
                            harness: HarnessOutcome) -> None:
    """`BenchmarkError` (keeping the scores as evidence) when `raise_client_errors` stopped this benchmark's route
    during this run (its `client_error.json` marker): every later request was refused without reaching the model,
    so the scores say nothing about it, even where `max_request_errors` allows the share of errors that left."""
    from pytest_nemo_eval.adapters.interceptors.raise_client_errors import MARKER

    try:
        marker = json.loads((Path(log_folder) / MARKER).read_text(encoding="utf-8")) if log_folder else None
    except (OSError, ValueError):
        return
    if not isinstance(marker, dict) or float(marker.get("time", 0)) < began:  # none, or an earlier run's
        return
    raise BenchmarkError(
        f"Diagnosis: raise_client_errors stopped {benchmark.id}: the model refused {marker.get('method')} "
        f"{marker.get('path')} with HTTP {marker.get('status')} ({marker.get('upstream_error')}), and every later "
        "request of the benchmark was refused without reaching the model, so its scores say nothing about the "
        f"model, whatever `max_request_errors: {benchmark.max_request_errors:g}` allows. Fix the request the "
        "harness sends (the proxy's request log has it), or leave this status out with raise_client_errors' "
        "exclude_status_codes.", harness)


def require_finished_thoughts(benchmark: ResolvedBenchmark, attempt: dict[str, float], harness: HarnessOutcome) -> None:
    """`BenchmarkError` (keeping the scores as evidence) when more of the model's answers were cut off by the
    token cap inside their thinking than the benchmark's `max_truncated_share` allows: such an answer is
    empty (or a half-thought), so accuracy drops to nothing while the model never answered
    (lm-evaluation-harness #3400, #3382). `attempt`: the route's counters of the attempt that scored."""
    answers, cut = attempt.get("generations", 0.0), attempt.get("truncated_reasoning", 0.0)
    if not answers or cut / answers <= benchmark.max_truncated_share:
        return
    raise BenchmarkError(
        f"Diagnosis: {cut:.0f} of the model's {answers:.0f} answers were cut off by the token cap inside their "
        f"thinking (finish_reason \"length\" before the thought ended), so {benchmark.id}'s scores say nothing "
        "about the model. Give the thinking room with a larger max_tokens (the harness's `max_new_tokens` / "
        "`max_tokens` in the benchmark's `params`), or switch thinking off with "
        "`chat_template_kwargs: {enable_thinking: false}` on the benchmark; or allow a share with "
        f"`max_truncated_share: {min(1.0, round(cut / answers + 0.005, 2))}`.", harness)


def reported_scores(benchmark: ResolvedBenchmark, harness: HarnessOutcome) -> dict[str, ScoreValue]:
    """The metrics a benchmark reports: its thresholded ones first (those the harness produced), then
    every other main-task score once, by its shortest name."""
    thresholds = benchmark.thresholds
    extra = [n for n in short_names(harness.scores, harness.flat_scores) if n not in thresholds]
    return {name: harness.scores[name] for name in [*thresholds, *extra] if name in harness.scores}


def metric_results(
    scores: dict[str, ScoreValue], gate: GateResult | None, thresholds: dict[str, Threshold]
) -> dict[str, MetricResult]:
    """value/stderr for every reported metric; threshold, direction, verdict and interval for gated ones
    (no verdict without a gate: the scores of a benchmark that errored are evidence, never judged)."""
    verdicts = {v.metric: v for v in gate.verdicts} if gate is not None else {}
    out = {}
    for name, score in scores.items():
        verdict = verdicts.get(name)
        threshold = thresholds.get(name)
        out[name] = MetricResult(
            value=score.value,
            stderr=score.stderr,
            count=score.count,
            threshold=threshold,
            direction=direction_of(threshold),
            verdict=verdict.verdict if verdict else None,
            ci_low=verdict.ci_low if verdict else None,
            ci_high=verdict.ci_high if verdict else None,
            ci_method=verdict.ci_method if verdict else None,
        )
    return out


def settled_by_sequence(gate: GateResult, record: dict[str, Any]) -> GateResult:
    """A benchmark that stopped early is judged by the sequence that stopped it (its mean after an
    optional stop is not a fixed-n sample's, so Wilson's interval would not hold): pass or fail as it
    settled, inconclusive when every planned sample ran and it never did; its interval is the sequence's."""
    verdicts = []
    for v in gate.verdicts:
        if record["metric"] in (v.metric, v.metric.split(".", 1)[0]):
            reason = record["reason"]
            v = v.model_copy(update={"verdict": reason if reason in ("pass", "fail") else "inconclusive",
                                     "ci_low": record["ci_low"], "ci_high": record["ci_high"],
                                     "ci_method": "betting CS"})
        verdicts.append(v)
    return gate.model_copy(update={"verdicts": verdicts})


def check_benchmark(
    state: NemoState, benchmark: ResolvedBenchmark, harness: HarnessOutcome,
    family: list[ResolvedBenchmark] | None = None,
) -> GateOutcome:
    """Thresholds (with confidence mode) and the baseline comparison under the benchmark's gate policy;
    `family`: the run's benchmarks, over whose comparisons a NO-GO is adjusted (default: this one)."""
    thresholds = benchmark.thresholds
    gate = evaluate(
        {m: harness.scores[m] for m in thresholds},
        thresholds,
        confidence=benchmark.confidence,
        inconclusive=benchmark.inconclusive,
    )
    if harness.early_stop is not None:
        gate = settled_by_sequence(gate, harness.early_stop)
    reported = reported_scores(benchmark, harness)
    metrics = metric_results(reported, gate, thresholds)
    return GateOutcome(
        benchmark=benchmark.name,
        benchmark_id=benchmark.id,
        gate=gate,
        comparisons=state.baseline_comparisons(benchmark.id, metrics, harness.samples_file, benchmark.gate,
                                               family or [benchmark]),
        scores=reported,
        metrics=metrics,
        baseline_path=str(state.options.baseline) if state.options.baseline else None,
        lenient=state.options.gate_lenient,
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
    """THE place a `BenchmarkResult` is built, from what each phase of the benchmark produced. Without a
    gate (the benchmark errored) the scores the harness left are kept, unjudged."""
    if gate is not None:
        metrics = gate.metrics
    elif harness is not None:
        metrics = metric_results(reported_scores(benchmark, harness), None, benchmark.thresholds)
    else:
        metrics = {}
    return BenchmarkResult(
        benchmark=benchmark.id,
        status=status,
        outcome=gate.outcome if gate is not None else None,  # type: ignore[arg-type]
        metrics=metrics,
        message=message,
        harness=f"{benchmark.harness}.{benchmark.task}",
        runtime=setup.runtime if setup else None,
        runtime_reason=setup.runtime_reason if setup else None,
        image=setup.image if setup else None,
        code_isolation=setup.code_isolation if setup else None,
        suite_sha256=setup.suite_sha256 if setup else None,
        seed=benchmark.seed,
        samples=harness.samples if harness else None,
        sampling=harness.sampling if harness else None,
        duration_s=harness.duration_s if harness else None,
        image_digest=harness.image_digest if harness else None,
        proxy=harness.proxy if harness else {},
        judge=harness.judge if harness else {},
        samples_file=harness.samples_file if harness else None,
        proxy_log=harness.proxy_log if harness else None,
        results_file=harness.results_file if harness else None,
        reused_from=harness.reused_from if harness else None,
        chat_template_kwargs=benchmark.chat_template_kwargs,
        baseline=gate.comparisons if gate is not None else [],
        gate=benchmark.gate,
        multiple_comparisons=benchmark.multiple_comparisons,
        early_stop=harness.early_stop if harness else None,
    )
