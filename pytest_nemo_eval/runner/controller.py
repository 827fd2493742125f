"""The hooks of the process that owns the run (the serial process, or the xdist controller, as
pytest-xdist's dsession.py): deploy once, hand the target to workers, collect scores, write
provenance, print the summary, always tear down. Registered by `plugin.activate`; an xdist
worker gets runner/worker.py's hooks instead."""

from __future__ import annotations

import datetime
import signal
import threading

from typing import Any

import pytest

from pytest_nemo_eval.results import BenchmarkResult, RunResult
from pytest_nemo_eval.runner.command_line import suite_args
from pytest_nemo_eval.runner.items import ResultReporting
from pytest_nemo_eval.runner.plugin_state import WORKERINPUT_KEY, NemoState, state_of

EXPORTER_NAMES = {"json": "nemo-eval-json-results", "html": "nemo-eval-html-report", "mlflow": "nemo-eval-mlflow"}


def _is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession")


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def announce(hook: Any, config: pytest.Config, **kwargs: Any) -> None:
    """Call every implementation of one of our hooks (newhooks.py) on its own: an exporter that
    raises is reported in one line and never stops the others or loses the gate's results."""
    for impl in hook.get_hookimpls():
        try:
            impl.function(**{name: {**kwargs, "config": config}[name] for name in impl.argnames})
        except Exception as exc:  # an exporter's bug or unreachable server: say so, keep going
            where = getattr(impl.plugin, "__name__", type(impl.plugin).__name__)
            line = f"[nemo-eval] exporter {where} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            reporter.write_line(line) if reporter is not None else print(line, flush=True)


class ControllerHooks(ResultReporting):
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.state: NemoState = state_of(config)  # validates settings now
        self.results: list[BenchmarkResult] = []
        self.run: RunResult | None = None
        self.started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        from pytest_nemo_eval.report.html import HtmlReportExporter
        from pytest_nemo_eval.report.json_file import JsonResultsExporter

        options = self.state.options
        config.pluginmanager.register(JsonResultsExporter(options.output_dir), EXPORTER_NAMES["json"])
        config.pluginmanager.register(HtmlReportExporter(options.output_dir, options.api_key_env), EXPORTER_NAMES["html"])
        from pytest_nemo_eval.report.mlflow_export import MlflowExporter, tracking_uri_from

        uri = tracking_uri_from(options.mlflow_uri)
        if uri:
            exporter = MlflowExporter(uri, options.mlflow_experiment, options.output_dir)
            config.pluginmanager.register(exporter, EXPORTER_NAMES["mlflow"])
        self._previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            # A CI job cancelled with SIGTERM unwinds like Ctrl-C, so teardown still stops the model.
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                self._previous_sigterm = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        if self.state.options.wants_target or suite_args(config):
            problem = self.state.options.target_problem()
            if problem:
                raise pytest.UsageError(f"pytest-nemo-eval: {problem}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """The xdist controller deploys ONCE, before any worker starts (xdist's
        own sessionstart, which starts the workers, is trylast)."""
        if _is_xdist_controller(self.config) and self.state.options.wants_target and not self.config.option.collectonly:
            self.state.start_local()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """Hand the controller's endpoint and proxy to each xdist worker."""
        if self.state.options.wants_target:
            node.workerinput[WORKERINPUT_KEY] = self.state.start_local().model_dump_json()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Serial run: deploy once, after collection and before the first benchmark
        (so deployment time never counts against a benchmark's timeout)."""
        if self.config.option.collectonly or session.testsfailed:
            return  # collection errors stop the run before any benchmark: do not deploy for nothing
        from pytest_nemo_eval.runner.items import BenchmarkItem

        benchmarks = [item for item in session.items if isinstance(item, BenchmarkItem)]
        if benchmarks:
            problem = self.state.options.target_problem()
            if problem:
                raise pytest.UsageError(f"pytest-nemo-eval: {problem}")
            # skips are decided before deploying: a suite this machine can run none of deploys nothing
            if all(item.prepared().skip for item in benchmarks) and len(benchmarks) == len(session.items):
                reasons = sorted({item.prepared().skip or "" for item in benchmarks})
                reporter = self.config.pluginmanager.get_plugin("terminalreporter")
                line = (f"[nemo-eval] nothing deployed: all {len(benchmarks)} benchmarks will skip "
                        f"({'; '.join(reasons)[:500]})")
                if reporter is not None:
                    reporter.write_line(line)
                else:
                    print(line, flush=True)
                return
            self.state.start_local()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A benchmark's final report (from this process or an xdist worker) carries its result."""
        from pytest_nemo_eval.report.summary import results_of

        for result in results_of(report):
            self.results.append(result)
            announce(self.config.hook.pytest_nemo_benchmark_result, self.config, result=result)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """The session's RunResult: JUnit suite provenance (before junitxml writes the file),
        then every exporter."""
        from pytest_nemo_eval.report.json_file import junit_path
        from pytest_nemo_eval.report.summary import add_suite_properties, keep_samples, provenance

        local = self.state.local
        deployments = local.deployments_started if local is not None else 0
        facts = provenance(self.state.target, deployments, self.results, self.started)
        from pytest_nemo_eval.runner import shards

        facts.update(shards.provenance(self.config))  # `nemo-eval-report merge` checks the shards by it
        self.run = RunResult(provenance=facts, benchmarks=keep_samples(self.results, junit_path(self.config)))
        add_suite_properties(self.config, self.run)
        if self.results:
            announce(self.config.hook.pytest_nemo_run_result, self.config, run=self.run)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from pytest_nemo_eval.report.summary import write_summary

        if self.run is not None:
            local = self.state.local
            write_summary(terminalreporter, self.run, self.state.target, local.deploy_seconds if local else 0.0)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Teardown always runs here: after failures, timeouts, Ctrl-C and SIGTERM too."""
        try:
            self.state.stop()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
