"""Exporter: the session's `RunResult` as a plain JSON file beside the JUnit file, for any
other tool (`gate.xml` -> `gate.results.json`; without --junitxml: `<nemo-output-dir>/results.json`),
One exporter = one plugin implementing a hook of newhooks.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_nemo_eval.results import RunResult


def junit_path(config: pytest.Config) -> Path | None:
    """The --junitxml file, resolved as pytest's junitxml resolves it; None without one."""
    xmlpath = getattr(config.option, "xmlpath", None)
    return Path(os.path.abspath(os.path.expanduser(xmlpath))) if xmlpath else None


def results_path(config: pytest.Config, output_dir: Path) -> Path:
    junit = junit_path(config)
    return junit.with_name(junit.stem + ".results.json") if junit else output_dir / "results.json"


class JsonResultsExporter:
    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self.written: Path | None = None

    def pytest_nemo_run_result(self, run: RunResult, config: pytest.Config) -> None:
        self.written = run.write_json(results_path(config, self.output_dir))
