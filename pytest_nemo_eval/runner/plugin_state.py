"""Per-run state of the plugin: options, the model target, the baseline.

One `NemoState` lives in `config.stash`. In the serial process and the xdist
controller it owns `LocalResources` (deploy + proxy); in an xdist worker it
only holds the `Target` the controller sent through `workerinput`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_nemo_eval.gate import Comparison
from pytest_nemo_eval.runner.settings import NemoOptions, read_options
from pytest_nemo_eval.runner.resources import PROXY_LOG_DIR, LocalResources, ProxyControl, Target, TargetUnavailable
from pytest_nemo_eval.results import MetricResult
from pytest_nemo_eval.suite import GatePolicy, ResolvedBenchmark

if TYPE_CHECKING:
    from pytest_nemo_eval.report.baseline import Baseline
    from pytest_nemo_eval.runner.progress import ProgressReporter

STATE_KEY = pytest.StashKey["NemoState"]()
WORKERINPUT_KEY = "nemo_target"
EXAMPLE_LOG_ENTRIES = 20


class NemoState:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.options: NemoOptions = read_options(config)
        self.workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.local: LocalResources | None = None
        self._target: Target | None = None
        self._baseline: Baseline | None = None
        self._progress_reporter: ProgressReporter | None = None
        if self.workerinput and self.workerinput.get(WORKERINPUT_KEY):
            self._target = Target.model_validate_json(self.workerinput[WORKERINPUT_KEY])

    @property
    def target(self) -> Target | None:
        """The model target once started (or received from the controller); None before."""
        return self._target

    @property
    def is_worker(self) -> bool:
        return self.workerinput is not None

    @property
    def deploying(self) -> bool:
        return bool(self.options.checkpoint) and not self.options.endpoint

    def start_local(self, progress=None) -> Target:
        """Deploy/adopt and start the proxy in this process (idempotent). Bad settings or an
        unreachable endpoint raise `pytest.UsageError` with one clear message."""
        if self._target is None:
            if self.is_worker:
                raise TargetUnavailable(
                    "This xdist worker got no model target from the controller. Pass --nemo-checkpoint or "
                    "--nemo-endpoint on the command line (not only inside a suite glob)."
                )
            self.local = LocalResources(self.options, progress=progress or self._progress)
            try:
                self._target = self.local.start().target
            except TargetUnavailable as exc:
                raise pytest.UsageError(f"pytest-nemo-eval: {exc}") from None
            if self.options.progress_interval > 0:
                from pytest_nemo_eval.runner.progress import ProgressReporter

                self._progress_reporter = ProgressReporter(
                    ProxyControl(self._target.proxy_url),
                    self.options.progress_interval,
                    self._progress,
                    self.options.limit_samples,
                    log_dir=Path(self._target.output_dir) / PROXY_LOG_DIR,  # progress_tracking's progress.json
                ).start()
        return self._target

    def require_live(self) -> Target:
        """The target with its model server running (deployed now if the run deployed lazily): for what
        needs the live model, not only the proxy (the `nemo_target` fixture's `upstream_url`)."""
        target = self.start_local()
        try:
            if self.local is not None:
                self.local.ensure_live()
            elif self.is_worker:
                ProxyControl(target.proxy_url).ensure_live()
        except TargetUnavailable as exc:
            raise pytest.UsageError(f"pytest-nemo-eval: {exc}") from None
        return target

    def target_and_proxy(self) -> tuple[Target, ProxyControl]:
        target = self.start_local()
        return target, ProxyControl(target.proxy_url)

    def stop(self) -> None:
        if self._progress_reporter is not None:
            self._progress_reporter.stop()
        if self.local is not None:
            self.local.stop()

    def _progress(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line, flush=True)

    # --- per-benchmark settings ------------------------------------------------
    def runtime_for(self, benchmark: ResolvedBenchmark) -> str:
        return self.runtime_choice(benchmark)[0]

    def runtime_choice(self, benchmark: ResolvedBenchmark) -> tuple[str, str]:
        """(runtime, why). `--nemo-runtime` > suite; `auto`: the builtin harness locally; an
        eval-factory harness in Docker when its image is present locally, else locally when
        NeMo Evaluator's CLI is installed, else in Docker (which pulls the image or skips)."""
        runtime = self.options.runtime or benchmark.runtime
        if runtime != "auto":
            source = "--nemo-runtime" if self.options.runtime else "the suite"
            return runtime, f"runtime {runtime}: set by {source}"
        if benchmark.harness == "builtin":
            return "local", "runtime auto -> local: the builtin harness runs as a local process"
        from pytest_nemo_eval.harness.eval_factory import EVALUATOR_COMMANDS
        from pytest_nemo_eval.runner.machine_probes import docker_problem, image_present

        image = benchmark.image_for_docker()
        daemon_problem = docker_problem()
        if daemon_problem is None and image_present(image):
            return "docker", f"runtime auto -> docker: image {image} is present locally"
        cli = next(filter(None, map(shutil.which, EVALUATOR_COMMANDS)), None)
        absent = daemon_problem or f"image {image} is not present locally"
        if cli:
            return "local", f"runtime auto -> local: {absent}, and NeMo Evaluator's CLI is installed at {cli}"
        return "docker", f"runtime auto -> docker: {absent}, and no `nemo-evaluator` is on PATH"

    def adapter_for(self, benchmark: ResolvedBenchmark) -> dict[str, Any]:
        """The suite's adapter block with the run's cache mode (and per-checkpoint namespace), and
        the first EXAMPLE_LOG_ENTRIES requests and responses logged (the HTML report's examples)
        unless the suite configures logging itself."""
        adapter = dict(benchmark.adapter)
        for kind in ("request_logging", "response_logging"):
            adapter.setdefault(kind, {"max_entries": EXAMPLE_LOG_ENTRIES})
        cache = adapter.get("cache")
        cache = {"mode": cache} if isinstance(cache, str) else dict(cache or {})
        cache["mode"] = self.options.cache
        if self._target is not None and self._target.cache_namespace and "namespace" not in cache:
            cache["namespace"] = self._target.cache_namespace
        adapter["cache"] = cache
        return adapter

    def baseline_comparisons(
        self, benchmark_id: str, metrics: dict[str, MetricResult], samples_file: str | None = None,
        policy: GatePolicy | None = None, family: list[ResolvedBenchmark] | None = None,
    ) -> list[Comparison]:
        """Every metric of `benchmark_id` shared with `--nemo-baseline` (none without one), decided by
        `policy`; NO-GO adjusted over the comparisons of `family` (the run's benchmarks) that can fail it."""
        if self.options.baseline is None:
            return []
        from pytest_nemo_eval.report.baseline import Baseline

        if self._baseline is None:
            if not self.options.baseline.is_file():
                raise pytest.UsageError(
                    f"--nemo-baseline {self.options.baseline} does not exist. Pass the JUnit XML of an earlier run."
                )
            self._baseline = Baseline(self.options.baseline, max_drop=self.options.gate_max_drop,
                                      lenient=self.options.gate_lenient)
        size = self._baseline.family_size([(b.id, b.gate) for b in family]) if family else None
        return self._baseline.compare(benchmark_id, metrics, samples_file, policy=policy, family_size=size) or []


def state_of(config: pytest.Config) -> NemoState:
    """The run's state, created on first use (so runs without nemo never build it)."""
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        state = config.stash[STATE_KEY] = NemoState(config)
    return state
