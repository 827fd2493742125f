"""Hooks pytest-nemo-eval announces (registered with `pluginmanager.add_hookspecs`, as
pytest-xdist's newhooks.py). Every exporter (JSON file, HTML, MLflow, a team's own) is a plugin
implementing one of them, so adding an exporter is one file, or a few lines in a conftest.py:

    def pytest_nemo_run_result(run, config):
        post_to_dashboard(run.model_dump(mode="json"))

Both are called only in the process that owns the run (the serial process or the xdist
controller), once per benchmark and once per session; never in xdist workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_nemo_eval.results import BenchmarkResult, RunResult


@pytest.hookspec()
def pytest_nemo_benchmark_result(result: BenchmarkResult, config: pytest.Config) -> None:
    """A benchmark finished (passed, failed, errored or was skipped); `result` is its typed result."""


@pytest.hookspec()
def pytest_nemo_run_result(run: RunResult, config: pytest.Config) -> None:
    """The session finished; `run` holds the provenance and every benchmark's result. Called before
    pytest writes the JUnit file, so an exporter must not expect it on disk yet."""
