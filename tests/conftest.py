"""Fixtures shared by every test area: the demo checkpoint and one deployment of it.

Both are session-scoped and real: the checkpoint is trained once with
megatron-core on the CPU (then cached on disk), and the deployment is a real
`nemo-eval deploy` process (PyTriton + OpenAI HTTP front).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    """Pin the demo-checkpoint cache before pytester points HOME at a temp dir:
    inner pytest runs and their deployments must reuse the trained demo, not retrain it."""
    from pytest_nemo_eval.checkpoint.demo import CACHE_ENV, default_cache_dir

    os.environ[CACHE_ENV] = str(default_cache_dir())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the trained demo `demo_model`: CI runs those again against a demo
    trained from another seed (NEMO_EVAL_DEMO_SEED), proving they hold for any demo that learned."""
    for item in items:
        if "demo_checkpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.demo_model)


@pytest.fixture(scope="session")
def demo_checkpoint() -> Path:
    from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint

    return ensure_demo_checkpoint()


@pytest.fixture(scope="session")
def demo_deployment(demo_checkpoint):
    from pytest_nemo_eval.serving.launcher import Deployment, DeploymentSettings

    with Deployment(DeploymentSettings(checkpoint=demo_checkpoint)) as deployment:
        yield deployment
