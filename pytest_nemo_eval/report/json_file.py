"""Exporter: the session's `RunResult` as a plain JSON file beside the JUnit file, for any
other tool (`gate.xml` -> `gate.results.json`; without --junitxml: `<nemo-output-dir>/results.json`).
One exporter = one plugin implementing a hook of newhooks.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_nemo_eval.results import RunResult


def results_path(config: pytest.Config, output_dir: Path) -> Path:
    xmlpath = getattr(config.option, "xmlpath", None)
    if xmlpath:
        junit = Path(os.path.abspath(os.path.expanduser(xmlpath)))  # as pytest's junitxml resolves it
        return junit.with_name(junit.stem + ".results.json")
    return output_dir / "results.json"


class JsonResultsExporter:
    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self.written: Path | None = None

    def pytest_nemo_run_result(self, run: RunResult, config: pytest.Config) -> None:
        self.written = run.write_json(results_path(config, self.output_dir))
