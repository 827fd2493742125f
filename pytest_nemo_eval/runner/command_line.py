"""What the command line asks of the plugin, read cheaply (no pydantic, no YAML parsing of settings):
whether any nemo setting is given, and which suite files are named. Used by plugin.py to decide
whether to activate, and by the session hooks to validate the target early."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_nemo_eval.runner.options import SETTINGS, dest_name, env_name


def settings_given(config: pytest.Config) -> bool:
    """Any nemo option, env var or ini key set."""
    for name, _, _ in SETTINGS:
        dest = dest_name(name)
        if config.getoption(dest, None) is not None or os.environ.get(env_name(name)) or config.getini(f"nemo_{dest}"):
            return True
    return False


def suite_args(config: pytest.Config) -> list[Path]:
    """Suite files named on the command line (what the xdist controller sees before workers collect)."""
    found = []
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::", 1)[0])
        if path.suffix in (".yaml", ".yml") and path.is_file():
            from pytest_nemo_eval.suite import looks_like_suite

            if looks_like_suite(path):
                found.append(path)
    return found
