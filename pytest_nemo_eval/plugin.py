"""pytest entry point (`pytest11`): options, activation and fixtures only.

The plugin is loaded by every pytest run in an environment where the package
is installed, so it stays inert — no deployment, no collection changes, no
heavy imports — unless a suite file is collected or a `--nemo-*` setting
(option, `NEMO_EVAL_*` env var or `nemo_*` ini key) is given. Then it
registers `runner.controller.ControllerHooks` (or, in an xdist worker,
`runner.worker.WorkerHooks`), which do the work.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from pytest_nemo_eval.runner.command_line import settings_given, suite_args
from pytest_nemo_eval.runner.options import addoption

HOOKS_NAME = "nemo-eval-session"


def pytest_addoption(parser: pytest.Parser) -> None:
    addoption(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Our own hooks (newhooks.py): exporters and users' conftest files implement them."""
    from pytest_nemo_eval import newhooks

    pluginmanager.add_hookspecs(newhooks)


def activate(config: pytest.Config) -> None:
    """Register the run's hooks once: the controller's (serial process or xdist controller) or a
    worker's; validates the settings (a bad value is a UsageError)."""
    if config.pluginmanager.has_plugin(HOOKS_NAME):
        return
    if hasattr(config, "workerinput"):
        from pytest_nemo_eval.runner.worker import WorkerHooks as Hooks
    else:
        from pytest_nemo_eval.runner.controller import ControllerHooks as Hooks
    config.pluginmanager.register(Hooks(config), HOOKS_NAME)
    from pytest_nemo_eval.runner.plugin_state import state_of
    from pytest_nemo_eval.runner.shards import register as register_shard

    options = state_of(config).options  # --nemo-shard I/N: keeps this shard's items (runner/shards.py)
    register_shard(config, options.shard, options.shard_durations)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if settings_given(config) or suite_args(config):
        activate(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    """A YAML file named on the command line, or matching an `nemo_suite_files` glob,
    is a suite when it has a top-level `benchmarks:` key."""
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    config = parent.config
    if not parent.session.isinitpath(file_path):
        patterns = config.getini("nemo_suite_files")
        root = config.rootpath
        relative = str(file_path.relative_to(root)) if file_path.is_relative_to(root) else str(file_path)
        if not any(fnmatch.fnmatch(relative, pattern) for pattern in patterns):
            return None
    from pytest_nemo_eval.suite import looks_like_suite

    if not looks_like_suite(file_path):
        return None
    activate(config)
    from pytest_nemo_eval.runner.items import SuiteFile

    return SuiteFile.from_parent(parent, path=file_path)


@pytest.fixture(scope="session")
def nemo_target(pytestconfig: pytest.Config):
    """The evaluated model behind the proxy: `.upstream_url`, `.model_id`, `.proxy_url`, `.provenance`.
    Deploys `--nemo-checkpoint` (or adopts `--nemo-endpoint`) on first use; under xdist the
    controller's deployment is shared by every worker. A suite alone deploys only on its first cache
    miss; this fixture hands out `upstream_url`, so it deploys at once."""
    activate(pytestconfig)
    from pytest_nemo_eval.runner.plugin_state import state_of

    return state_of(pytestconfig).require_live()


@pytest.fixture(scope="session")
def nemo_deployment(nemo_target):
    """The model endpoint: `.upstream_url` (OpenAI routes under /v1) and `.model_id`."""
    return nemo_target


@pytest.fixture(scope="session")
def nemo_proxy(nemo_target):
    """Control client of the run's interceptor proxy: `register(name, adapter) -> base URL`, `stats(name)`."""
    from pytest_nemo_eval.runner.resources import ProxyControl

    return ProxyControl(nemo_target.proxy_url)


@pytest.fixture
def nemo_benchmark(request: pytest.FixtureRequest, pytestconfig: pytest.Config, nemo_target):
    """Run a benchmark from a Python test: `nemo_benchmark({name, harness, task, thresholds, ...},
    defaults={...}) -> outcome`; `outcome.check()` asserts like a suite item, `outcome.scores`
    holds every score. Uses the run's deployment and proxy (see runner/api.py); the results join the
    run's JSON/HTML/MLflow exports."""
    import functools

    from pytest_nemo_eval.runner.api import run_benchmark
    from pytest_nemo_eval.runner.plugin_state import state_of

    return functools.partial(run_benchmark, state_of(pytestconfig), node=request.node)
