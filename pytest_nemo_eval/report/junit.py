"""Read (and merge) JUnit XML files written by the plugin, with junitparser."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from pytest_nemo_eval.report.properties import from_properties
from pytest_nemo_eval.results import RunResult, Status


class ReportError(ValueError):
    """A JUnit file that cannot be read."""


def _status(case: Any) -> tuple[Status, str]:
    for result in case.result:
        kind = type(result).__name__.lower()
        message = result.message or ""
        if kind == "error":
            return "error", message
        if kind == "failure":
            return "failed", message
        if kind == "skipped":
            return "skipped", message
    return "passed", ""


def _case_properties(case: Any) -> list[tuple[str, str]]:
    from junitparser import Properties

    props = case.child(Properties)
    return [(p.name, p.value) for p in props] if props is not None else []


def read_reports(paths: Iterable[str | Path]) -> RunResult:
    """Benchmark results and provenance of every file (files in order; non-benchmark cases ignored)."""
    from junitparser import JUnitXml, TestSuite

    report = RunResult()
    for name in paths:
        path = Path(name)
        try:
            xml = JUnitXml.fromfile(str(path))
        except Exception as exc:  # junitparser/lxml raise various parse errors
            raise ReportError(
                f"Cannot read JUnit file {path}: {type(exc).__name__}: {exc}. Pass a file written by "
                "`pytest --junitxml=...`."
            ) from None
        suites = [xml] if isinstance(xml, TestSuite) else list(xml)
        for suite in suites:
            for prop in suite.properties():
                report.provenance[prop.name] = prop.value
            for case in suite:
                status, message = _status(case)
                result = from_properties(_case_properties(case), status=status, message=message or None)
                if result is not None:
                    report.benchmarks.append(result)
    return report


def merge_files(paths: Iterable[str | Path], output: str | Path) -> None:
    """Write one JUnit file holding every test suite of `paths` (xdist shards, CI jobs)."""
    from junitparser import JUnitXml, TestSuite

    merged = JUnitXml()
    for path in paths:
        xml = JUnitXml.fromfile(str(path))
        for suite in [xml] if isinstance(xml, TestSuite) else list(xml):
            merged.add_testsuite(suite)
    merged.update_statistics()
    merged.write(str(output), pretty=True)
