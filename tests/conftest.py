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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take `serving_backend` run once per backend their module lists with
    `pytestmark = pytest.mark.serving_backends("pytriton", "ray")` (default: pytriton only).
    Session scope: each backend's deployment starts once, and pytest runs its tests together."""
    if "serving_backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("serving_backends")
        backends = marker.args if marker else ("pytriton",)
        metafunc.parametrize("serving_backend", backends, scope="session")


# Tests of the run's mechanics (a deployment killed, stopped, sharded, sampled, resumed): they need a checkpoint
# that deploys, not what it learned, so the second-seed pass leaves them out (`any_checkpoint`, ~2-3 minutes).
ANY_CHECKPOINT_FILES = frozenset({
    "test_deployment_death.py", "test_deployment_hang.py", "test_shards.py", "test_sampling.py",
    "test_progress_live.py", "test_cache_and_resume.py", "test_lm_eval_thinking_cut.py",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the trained demo `demo_model`: CI runs those again against a demo
    trained from another seed (NEMO_EVAL_DEMO_SEED), proving they hold for any demo that learned. Tests
    through the Ray backend are also `ray_backend`: the second-seed pass leaves them out (the OpenAI front is
    shared, and PyTriton's run of the same tests covers the second demo), which saves CI ~7 minutes."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "demo_checkpoint" in fixtures:
            item.add_marker(pytest.mark.demo_model)
        callspec = getattr(item, "callspec", None)
        on_ray = "ray_deployment" in fixtures or (callspec is not None and callspec.params.get("serving_backend") == "ray")
        if on_ray or item.path.name == "test_ray_backend.py":
            item.add_marker(pytest.mark.ray_backend)
        if item.path.name in ANY_CHECKPOINT_FILES:
            item.add_marker(pytest.mark.any_checkpoint)


@pytest.fixture(scope="session")
def demo_checkpoint() -> Path:
    from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint

    return ensure_demo_checkpoint()


@pytest.fixture(scope="session")
def demo_deployment(demo_checkpoint):
    from pytest_nemo_eval.serving.launcher import Deployment, DeploymentSettings

    with Deployment(DeploymentSettings(checkpoint=demo_checkpoint)) as deployment:
        yield deployment


RAY_TEST_REPLICAS = 2


@pytest.fixture(scope="session")
def ray_deployment(demo_checkpoint):
    """The demo behind the Ray Serve backend: 2 replicas of 1 CPU on a private local head."""
    pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install -e '.[ray]')")
    from pytest_nemo_eval.serving.launcher import Deployment, DeploymentSettings

    settings = DeploymentSettings(checkpoint=demo_checkpoint, backend="ray", replicas=RAY_TEST_REPLICAS,
                                  replica_cpus=1)
    with Deployment(settings) as deployment:
        yield deployment


@pytest.fixture(scope="session")
def served_deployment(request, serving_backend):
    """The deployment of the backend this test is parametrized with (pytest_generate_tests)."""
    return request.getfixturevalue({"pytriton": "demo_deployment", "ray": "ray_deployment"}[serving_backend])
