"""Helpers of the plugin tests: pytest runs inside pytest (pytester) on real servers.

Most tests evaluate the shared `demo_deployment` (a real `nemo-eval deploy`
process) through `--nemo-endpoint`, so the project deploys the demo model once
for all of them; only tests/plugin/test_deploy.py deploys through the plugin.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIMIT = "20"  # samples per benchmark in inner runs: enough for stderr, quick on a CPU


@pytest.fixture
def suite_file(pytester):
    """Write a suite YAML into the pytester dir: suite_file("name", "yaml text") -> Path."""

    def write(name: str, text: str) -> Path:
        path = pytester.path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def run_inner(pytester):
    """Run pytest inside pytest with the plugin's output in `nemo-out/` and JUnit in `junit.xml`."""

    def run(*args: str, subprocess: bool = False, timeout: float = 600):
        common = ["-p", "no:cacheprovider", "--nemo-output-dir", str(pytester.path / "nemo-out"),
                  "--junitxml", str(pytester.path / "junit.xml"), "-rA"]
        if subprocess:
            return pytester.runpytest_subprocess(*common, *args, timeout=timeout)
        return pytester.runpytest_inprocess(*common, *args)

    return run


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


@pytest.fixture(scope="session")
def endpoint(demo_deployment) -> str:
    """Base URL of the separately started demo server (a real `nemo-eval deploy` process)."""
    return demo_deployment.url
