"""What the plugin reads from an installed eval-factory package, checked against the real one
(nemo-evaluator 0.2.8 + nvidia-bigcode-eval 26.3 in their own venv): which tasks run model code, which task
names exist, and the `--overrides` syntax, whose oracle is nemo-evaluator's own parser."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pytest_nemo_eval.harness import eval_factory
from pytest_nemo_eval.harness.errors import UnknownTask
from pytest_nemo_eval.harness.framework_definitions import (
    check_task,
    installed_definition,
    runs_model_code,
)
from pytest_nemo_eval.harness.overrides import join_overrides, split_overrides

BIGCODE = "bigcode-evaluation-harness"
LM_EVAL = "lm-evaluation-harness"


@pytest.fixture
def bigcode_on_path(monkeypatch, bigcode_bin):
    monkeypatch.setenv("PATH", f"{bigcode_bin}{os.pathsep}{os.environ['PATH']}")
    return bigcode_bin


def test_code_execution_is_read_from_the_installed_framework_definition(bigcode_on_path, monkeypatch, tmp_path):
    """With the table's entry emptied, bigcode's own command template (`--allow_code_execution`) still says it."""
    known = eval_factory.KNOWN_HARNESSES[BIGCODE]
    monkeypatch.setitem(eval_factory.KNOWN_HARNESSES, BIGCODE, known.model_copy(update={"code_tasks": ()}))
    definition = installed_definition(BIGCODE)
    assert definition is not None and definition.name == BIGCODE and "humaneval" in definition.tasks
    assert runs_model_code(BIGCODE, "humaneval", {})
    monkeypatch.setenv("PATH", str(tmp_path))  # not installed and not in the table: nothing says so
    assert installed_definition(BIGCODE) is None and not runs_model_code(BIGCODE, "humaneval", {})


def test_lm_eval_tasks_that_run_model_code_are_read_from_the_installed_package(eval_factory_bin, monkeypatch):
    """For every task of the installed nvidia-lm-eval's framework.yml, the package itself decides whether it
    runs model-written code (lm_eval_code_tasks.py, in its venv): the lm_eval task config's `unsafe_code`, a
    metric that loads HF evaluate's `code_eval` (the adlr_* tasks, silently), or a code flag in framework.yml.
    `runs_model_code` (framework.yml flags plus our table of silent tasks) must agree on every task, both ways."""
    monkeypatch.setenv("PATH", f"{eval_factory_bin}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run([str(eval_factory_bin / "python"), str(Path(__file__).parent / "lm_eval_code_tasks.py")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    package = json.loads(out.stdout.splitlines()[-1])
    assert len(package) > 100 and all(found["resolved"] for found in package.values())  # every task resolved
    says = {task for task, found in package.items() if found["unsafe_code"] or found["code_eval"] or found["flags"]}
    assert {"humaneval_instruct", "mbpp_plus_chat", "adlr_humaneval_greedy"} <= says  # the reading finds them
    ours = {task for task in package if runs_model_code(LM_EVAL, task, {})}
    assert ours == says, {"we miss": sorted(says - ours), "we add": sorted(ours - says)}


def test_task_name_is_checked_against_the_installed_package(bigcode_on_path):
    check_task(BIGCODE, "humaneval")
    with pytest.raises(UnknownTask, match=r"'HumanEval' is not one of the \d+ tasks of bigcode-evaluation-harness"
                                          r".*Did you mean: humaneval\?"):
        check_task(BIGCODE, "HumanEval")
    with pytest.raises(UnknownTask, match="Did you mean: .*mbpp"):
        check_task(BIGCODE, "mbpp")
    check_task("lm-evaluation-harness", "my_own_include_path_task")  # lm-eval runs any task


def test_override_values_with_commas_reach_nemo_evaluator_intact(bigcode_bin):
    overrides = {"config.params.extra.args": "--include_path /data/a,b --flag 'q'", "config.params.extra.x": "it's, ok",
                 "config.params.limit_samples": 3, "config.params.extra.do_sample": True, "plain": "abc"}
    text = join_overrides(overrides)
    parsed = subprocess.run(
        [str(bigcode_bin / "python"), "-c", "import json, sys\nfrom nemo_evaluator.core.input import "
         "parse_override_params\nprint(json.dumps(parse_override_params(sys.argv[1])))", text],
        capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(parsed.stdout.splitlines()[-1]) == {
        "config": {"params": {"extra": {"args": "--include_path /data/a,b --flag 'q'", "x": "it's, ok",
                                        "do_sample": True}, "limit_samples": 3}},
        "plain": "abc"}
    assert dict(split_overrides(text)) == {k: str(v).lower() if isinstance(v, bool) else str(v)
                                           for k, v in overrides.items()}  # the builtin harness reads the same


def test_offline_dataset_download_is_diagnosed_in_one_line(bigcode_on_path, monkeypatch, tmp_path):
    """Real bigcode, offline, with an empty datasets cache: `datasets` refuses the hub download; the error's
    first line says so (and how to fix it) above the log tail. No request reaches the model."""
    from pytest_nemo_eval.harness.errors import HarnessFailed
    from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    (tmp_path / "empty-cache").mkdir()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    inv = HarnessInvocation(harness=BIGCODE, task="humaneval", model_id="m", model_url="http://127.0.0.1:9/v1/completions",
                            output_dir=tmp_path / "run", runtime="local", code_isolation="bubblewrap", timeout_s=300,
                            overrides={"config.params.extra.n_samples": 1})
    with pytest.raises(HarnessFailed) as failed:
        run_harness(inv)
    first, second = str(failed.value).splitlines()[:2]
    assert first.startswith("Diagnosis: download blocked: ") and "openai_humaneval" in first, str(failed.value)[-3000:]
    assert second.startswith(f"Harness {BIGCODE}.humaneval exited with status")
