"""Builtin harness pieces that need no model: task lookup, specs, datasets, overrides, answer extraction."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pytest_nemo_eval.harness.builtin.cli import parse_overrides
from pytest_nemo_eval.harness.builtin.dataset import DatasetError, load_jsonl
from pytest_nemo_eval.harness.builtin.exact_match import extract_answer
from pytest_nemo_eval.harness.builtin.tasks import (
    TASKS_PATH_ENV, ExactMatchSpec, InvalidTaskSpec, find_task, load_spec, task_names,
)
from pytest_nemo_eval.harness.errors import HarnessError, UnknownTask

CLI = [sys.executable, "-m", "pytest_nemo_eval.harness.builtin.cli"]
DEMO_TASKS = {"demo_addition", "demo_reversal", "demo_addition_mc", "demo_addition_code", "demo_tool_call"}


def test_ls_prints_one_harness_task_per_line():
    listed = subprocess.run([*CLI, "ls"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert listed == sorted(listed) and listed == task_names()
    assert {f"builtin.{t}" for t in DEMO_TASKS | {"sample_gsm_arith", "sample_humaneval"}} <= set(listed)


def test_every_packaged_task_spec_loads_with_its_data():
    for name in task_names():
        spec = find_task(name)
        assert spec.data_path().is_file(), f"{name}: {spec.data_path()} missing"


def test_unknown_task_lists_close_matches():
    with pytest.raises(UnknownTask, match=r"Did you mean: builtin\.demo_addition\b"):
        find_task("builtin.demo_adition")


def test_unknown_task_from_the_cli_exits_1_with_close_matches(tmp_path):
    run = subprocess.run(
        [*CLI, "run_eval", "--eval_type", "builtin.demo_revrsal", "--model_id", "m",
         "--model_url", "http://127.0.0.1:9/v1/completions", "--output_dir", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert run.returncode == 1
    assert "Unknown builtin task" in run.stderr and "builtin.demo_reversal" in run.stderr
    assert not (tmp_path / "results.yml").exists()


def test_user_tasks_via_env_path_shadow_and_extend(tmp_path, monkeypatch):
    (tmp_path / "mine.jsonl").write_text(json.dumps({"id": 1, "prompt": "2+2=", "answer": "4"}) + "\n")
    (tmp_path / "my_task.yaml").write_text("type: exact_match\ndata: mine.jsonl\nmax_tokens: 4\n")
    monkeypatch.setenv(TASKS_PATH_ENV, str(tmp_path))
    assert "builtin.my_task" in task_names()
    spec = find_task("my_task")
    assert isinstance(spec, ExactMatchSpec) and spec.name == "my_task" and spec.max_tokens == 4
    assert spec.data_path() == (tmp_path / "mine.jsonl").resolve()


def test_invalid_spec_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: essay\ndata: x.jsonl\n")
    with pytest.raises(InvalidTaskSpec, match="bad.yaml is invalid"):
        load_spec(bad)
    with pytest.raises(InvalidTaskSpec, match="does not exist"):
        load_spec(tmp_path / "absent.yaml")


def test_missing_dataset_names_the_path(tmp_path):
    with pytest.raises(DatasetError, match=r"absent\.jsonl does not exist"):
        load_jsonl(tmp_path / "absent.jsonl", ["prompt"])


def test_malformed_jsonl_line_is_reported_with_its_line_number(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "prompt": "a"}\n\n{"id": 2, "prompt": "b"\n')
    with pytest.raises(DatasetError, match=r"d\.jsonl:3: not valid JSON"):
        load_jsonl(data, ["prompt"])
    data.write_text('{"id": 1, "prompt": "a"}\n{"id": 2}\n')
    with pytest.raises(DatasetError, match=r"d\.jsonl:2: record lacks field\(s\) prompt"):
        load_jsonl(data, ["prompt"])


def test_overrides_accept_nemo_evaluator_prefixes_and_reject_typos():
    parsed = parse_overrides("config.params.limit_samples=5,config.params.parallelism=4,max_new_tokens=7,temperature=0.5")
    assert (parsed.limit_samples, parsed.parallelism, parsed.max_tokens, parsed.temperature) == (5, 4, 7, 0.5)
    assert parse_overrides("target.api_endpoint.api_key=MY_KEY").api_key_env == "MY_KEY"
    with pytest.raises(HarnessError, match="Did you mean: parallelism"):
        parse_overrides("paralelism=3")
    with pytest.raises(HarnessError, match="not key=value"):
        parse_overrides("limit_samples")
    with pytest.raises(HarnessError, match="Invalid --overrides"):
        parse_overrides("limit_samples=0")


@pytest.mark.parametrize(
    "regex, extract, response, expected",
    [
        (None, "first", "  46 \n", "46"),
        (r"(-?[0-9][0-9,]*)", "last", "3 apples and 5 more makes 1,208 apples", "1,208"),
        (r"(-?[0-9][0-9,]*)", "first", "-12 then 4", "-12"),
        (r"#### (\d+)", "first", "no marker here", None),
    ],
)
def test_answer_extraction(regex, extract, response, expected):
    spec = ExactMatchSpec(type="exact_match", data="x.jsonl", extract_regex=regex, extract=extract)
    assert extract_answer(spec, response) == expected


def test_metric_carries_mean_and_standard_error_of_the_mean():
    from pytest_nemo_eval.harness.builtin.runner import _metric

    score = _metric("acc", [1.0, 0.0, 1.0, 1.0]).scores["acc"]
    assert score.value == pytest.approx(0.75) and score.stats.count == 4 and score.stats.sum == 3.0
    assert score.stats.stderr == pytest.approx(0.25)  # sample stddev 0.5 / sqrt(4)
    assert _metric("acc", [1.0]).scores["acc"].stats.stderr is None  # undefined for one sample, not 0
