"""Helpers of the plugin tests: pytest runs inside pytest (pytester) on real servers.

Most tests evaluate the shared `demo_deployment` (a real `nemo-eval deploy`
process) through `--nemo-endpoint`, so the project deploys the demo model once
for all of them; only tests/plugin/test_deploy.py deploys through the plugin.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


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


@pytest.fixture(scope="session")
def endpoint(demo_deployment) -> str:
    """Base URL of the separately started demo server (a real `nemo-eval deploy` process)."""
    return demo_deployment.url
