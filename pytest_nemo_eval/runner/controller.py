"""The hooks of the process that owns the run (the serial process, or the xdist controller, as
pytest-xdist's dsession.py): deploy once, hand the target to workers, collect scores, write
provenance, print the summary, always tear down. Registered by `plugin.activate`; an xdist
worker gets runner/worker.py's hooks instead."""

from __future__ import annotations

import signal
import threading

import pytest

from pytest_nemo_eval.runner.command_line import suite_args
from pytest_nemo_eval.runner.plugin_state import WORKERINPUT_KEY, NemoState, state_of


def _is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession")


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class ControllerHooks:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.state: NemoState = state_of(config)  # validates settings now
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

        if any(isinstance(item, BenchmarkItem) for item in session.items):
            problem = self.state.options.target_problem()
            if problem:
                raise pytest.UsageError(f"pytest-nemo-eval: {problem}")
            self.state.start_local()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" or not report.user_properties:
            return
        if report.when == "setup" and report.passed:
            return  # the call report carries the scores
        from pytest_nemo_eval.report.summary import remember

        remember(self.state, report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Suite-level JUnit provenance; runs before junitxml writes the file."""
        from pytest_nemo_eval.report.summary import add_suite_properties

        add_suite_properties(self.state)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        from pytest_nemo_eval.report.summary import write_summary

        write_summary(terminalreporter, self.state)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Teardown always runs here: after failures, timeouts, Ctrl-C and SIGTERM too."""
        try:
            self.state.stop()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
