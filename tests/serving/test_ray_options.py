"""The serving options are checked before anything starts: one usage error each, naming the fix.

No Ray cluster and no model here: these runs stop at option validation (pytest exit 4,
`nemo-eval deploy` exit 2). Ray's absence is made real for the run by `sys.modules["ray"] = None`,
which makes `import ray` fail exactly as in an environment without the extra.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SUITE = textwrap.dedent("""\
    benchmarks:
      - name: addition
        harness: builtin
        task: demo_addition
        thresholds:
          exact_match: {min: 0.5}
""")


@pytest.fixture
def run_suite(pytester):
    pytester.path.joinpath("s.yaml").write_text(SUITE)

    def run(*args: str):
        return pytester.runpytest_inprocess("-p", "no:cacheprovider", "s.yaml", "--nemo-checkpoint=demo",
                                            "--nemo-output-dir", str(pytester.path / "out"), *args)

    return run


@pytest.mark.parametrize(("args", "needle"), [
    (["--nemo-serving-backend=ray", "--nemo-replicas=0"], "--nemo-replicas='0': Input should be greater than 0"),
    (["--nemo-serving-backend=ray", "--nemo-replicas=-2"], "--nemo-replicas='-2': Input should be greater than 0"),
    (["--nemo-replicas=2"], "--nemo-replicas 2 needs --nemo-serving-backend ray*"),
    (["--nemo-ray-address=auto"], "--nemo-ray-address auto needs --nemo-serving-backend ray*"),
    (["--nemo-serving-backend=ray", "--nemo-replica-cpus=0"], "--nemo-replica-cpus='0': Input should be greater*"),
])
def test_bad_serving_options_are_usage_errors(run_suite, args, needle):
    result = run_suite(*args)
    assert result.ret == 4  # pytest's usage-error exit status: nothing was deployed
    result.stderr.fnmatch_lines([f"*{needle}*"])


def test_serving_options_come_from_env_and_ini_too(run_suite, pytester, monkeypatch):
    monkeypatch.setenv("NEMO_EVAL_REPLICAS", "3")
    result = run_suite()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--nemo-replicas 3 needs --nemo-serving-backend ray*"])
    monkeypatch.delenv("NEMO_EVAL_REPLICAS")
    pytester.makeini("[pytest]\nnemo_serving_backend = pytriton\nnemo_ray_address = 10.0.0.1:6379\n")
    result = run_suite()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--nemo-ray-address 10.0.0.1:6379 needs --nemo-serving-backend ray*"])


def test_ray_without_the_extra_is_one_usage_error_naming_it(run_suite, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    result = run_suite("--nemo-serving-backend=ray")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*The ray serving backend needs the `ray` extra*pytest-nemo-eval[[]ray[]]*"])


def test_the_plugin_and_pytriton_deploys_never_import_ray(pytester):
    """Without Ray installed the plugin works: loading it, reading options and the PyTriton stack import no ray."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "import pytest_nemo_eval.plugin, pytest_nemo_eval.serving.stack, pytest_nemo_eval.serving.backends.pytriton\n"
            "from pytest_nemo_eval.serving.backend import backend_missing\n"
            "assert backend_missing('pytriton') is None\n"
            "print(backend_missing('ray'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'pytest-nemo-eval[ray]'" in done.stdout


def test_nemo_eval_deploy_without_ray_exits_2_naming_the_extra(demo_checkpoint):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from pytest_nemo_eval.cli import main\n"
            f"sys.exit(main(['deploy', '--nemo-checkpoint', {str(demo_checkpoint)!r}, '--port', '0', "
            "'--nemo-serving-backend', 'ray', '--nemo-replicas', '2']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "needs the `ray` extra" in done.stderr and "pytest-nemo-eval[ray]" in done.stderr
    assert "Traceback" not in done.stderr


def test_nemo_eval_deploy_refuses_zero_replicas(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest_nemo_eval.cli", "deploy", "--nemo-checkpoint",
                           str(tmp_path), "--port", "0", "--replicas", "0", "--serving-backend", "ray"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--replicas must be at least 1 (got 0)" in done.stderr, done.stderr


def test_harness_parallelism_follows_the_replicas_unless_the_suite_sets_it():
    from pytest_nemo_eval.runner.resources import default_parallelism
    from pytest_nemo_eval.runner.settings import NemoOptions

    assert default_parallelism(NemoOptions(checkpoint="demo")) is None  # one copy: the harness's own default
    ray_x1 = NemoOptions(checkpoint="demo", serving_backend="ray", replicas=1)
    assert default_parallelism(ray_x1) is None
    ray_x4 = NemoOptions(checkpoint="demo", serving_backend="ray", replicas=4, max_batch_size=8)
    assert default_parallelism(ray_x4) == 32  # every replica's batch full
    assert default_parallelism(ray_x4.model_copy(update={"max_batch_size": 128})) == 256  # the harness's limit
