"""Reading what an inner pytest run left behind (JUnit via junitparser)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIMIT = "20"  # samples per benchmark in inner runs: enough for a stderr, quick on a CPU


def junit_cases(path: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """{test case name: (status, properties)} of a JUnit file, read with junitparser."""
    from junitparser import JUnitXml, Properties

    out = {}
    for suite in JUnitXml.fromfile(str(path)):
        for case in suite:
            status = "passed"
            for result in case.result:
                status = {"Failure": "failed", "Error": "error", "Skipped": "skipped"}[type(result).__name__]
            props = case.child(Properties)
            out[case.name] = (status, {p.name: p.value for p in props} if props is not None else {})
    return out


def junit_suite_properties(path: Path) -> dict[str, str]:
    from junitparser import JUnitXml

    return {p.name: p.value for suite in JUnitXml.fromfile(str(path)) for p in suite.properties()}
