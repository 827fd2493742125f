"""Suite files: validation errors name file, line and field; defaults merge into benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_nemo_eval.suite import SuiteError, load_suite, looks_like_suite

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_shipped_suites_validate():
    smoke = load_suite(REPO / "suites" / "smoke.yaml")
    release = load_suite(REPO / "suites" / "release.yaml")
    assert [b.name for b in smoke.resolved()] == [
        "demo_addition", "demo_reversal", "demo_addition_mc", "demo_addition_code", "demo_tool_call",
        "demo_chat_thinking"]
    assert all(b.harness == "builtin" and b.runtime == "local" for b in smoke.resolved())
    gsm8k = next(b for b in release.resolved() if b.name == "gsm8k")
    assert gsm8k.image_for_docker() == "nvcr.io/nvidia/eval-factory/lm-evaluation-harness:25.10"
    assert gsm8k.requires == ["gpu"] and gsm8k.confidence == 0.95


def test_typo_key_names_file_line_field_and_allowed_keys(tmp_path):
    path = write(tmp_path, "benchmarks:\n  - name: a\n    harness: builtin\n    task: t\n    treshold: {}\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    message = str(err.value)
    assert f"{path}:5: unknown field `benchmarks[0].treshold`" in message
    assert "thresholds" in message  # the allowed keys are listed


def test_threshold_typo_points_at_its_line(tmp_path):
    path = write(
        tmp_path,
        "benchmarks:\n  - name: a\n    harness: builtin\n    task: t\n    thresholds:\n      acc: {mni: 0.5}\n",
    )
    with pytest.raises(SuiteError, match=r"suite.yaml:6: unknown field `benchmarks\[0\].thresholds.acc.mni` \(allowed here: min, max\)"):
        load_suite(path)


def test_unknown_runtime_is_rejected_with_choices(tmp_path):
    path = write(tmp_path, "defaults:\n  runtime: kubernetes\nbenchmarks:\n  - {name: a, harness: builtin, task: t}\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert f"{path}:2: field `defaults.runtime`" in str(err.value)
    assert "'docker', 'local' or 'auto'" in str(err.value)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("benchmarks: []\n", "at least 1 item"),
        ("benchmarks:\n  - {name: a, harness: h, task: t}\n  - {name: a, harness: h, task: u}\n", "used twice"),
        ("benchmarks:\n  - {name: a, harness: h, task: t, thresholds: {acc: {}}}\n", "needs `min`, `max` or both"),
        ("benchmarks:\n  - {name: a, harness: h, task: t, confidence: 95}\n", "less than 1"),
        ("benchmarks:\n  - {name: 'a b', harness: h, task: t}\n", "should match pattern"),
        ("benchmarks:\n  - {name: a, harness: h, task: t, adapter: {cahce: reuse}}\n", "cahce"),
        ("- just\n- a list\n", "must be a mapping"),
        ("benchmarks: [\n", "not valid YAML"),
    ],
)
def test_bad_suites_fail_with_a_clear_message(tmp_path, body, expected):
    with pytest.raises(SuiteError, match=expected):
        load_suite(write(tmp_path, body))


def test_defaults_merge_and_benchmark_settings_win(tmp_path):
    path = write(
        tmp_path,
        "defaults:\n  timeout_s: 60\n  limit_samples: 10\n  params: {a: 1, b: 2}\n  image_tag: '25.10'\n"
        "benchmarks:\n  - {name: x, harness: simple-evals, task: t, timeout_s: 5, params: {b: 3}}\n",
    )
    (x,) = load_suite(path).resolved()
    assert (x.timeout_s, x.limit_samples, x.params) == (5, 10, {"a": 1, "b": 3})
    assert x.image_for_docker() == "nvcr.io/nvidia/eval-factory/simple-evals:25.10"


def test_looks_like_suite_needs_a_benchmarks_key(tmp_path):
    assert looks_like_suite(write(tmp_path, "benchmarks: []\n"))
    assert not looks_like_suite(write(tmp_path, "version: 2\njobs: {}\n"))
    assert not looks_like_suite(write(tmp_path, "{{{"))


def test_mounts_and_env_names_merge_and_resolve_against_the_suite_file(tmp_path):
    path = write(tmp_path, """\
defaults: {mounts: [data], env: [HF_TOKEN]}
benchmarks:
  - name: a
    harness: lm-evaluation-harness
    task: t
    mounts: [/opt/tasks, {host: ~/tok, container: /mnt/tok}]
    env: [HF_HUB_OFFLINE, HF_TOKEN]
""")
    (bench,) = load_suite(path).resolved()
    assert [(str(m.host), m.container) for m in bench.mounts] == [
        (str(tmp_path / "data"), None), ("/opt/tasks", None), (str(Path("~/tok").expanduser()), "/mnt/tok")]
    assert bench.env == ["HF_TOKEN", "HF_HUB_OFFLINE"]


@pytest.mark.parametrize("entry, expected", [
    ("env: [HF_TOKEN=abc]", "`benchmarks[0].env`: Value error, 'HF_TOKEN=abc' is not an environment variable NAME"),
    ("mounts: [{host: /x, container: rel}]", "container path 'rel' must be absolute"),
    ("mounts: [{host: /x, mode: rw}]", "unknown field `benchmarks[0].mounts[0].mode` (allowed here: host, container)"),
    ("params: {target.api_endpoint.api_key: sk-123}", "`target.api_endpoint.api_key` is not a NeMo Evaluator field"),
])
def test_bad_mounts_env_and_api_key_override_are_suite_errors(tmp_path, entry, expected):
    path = write(tmp_path, f"benchmarks:\n  - name: a\n    harness: lm-evaluation-harness\n    task: t\n    {entry}\n")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert expected in str(err.value) and f"{path}:5" in str(err.value)


def test_eval_factory_image_and_eval_type_names():
    """simple-evals: image `simple-evals`, framework (eval_type prefix) `simple_evals`."""
    release = load_suite(REPO / "suites" / "release.yaml")
    mmlu_pro = next(b for b in release.resolved() if b.name == "mmlu_pro")
    assert mmlu_pro.image_for_docker() == "nvcr.io/nvidia/eval-factory/simple-evals:25.10"
