"""`--nemo-sample-seed` with `--nemo-limit-samples` (issue 26 item 5): the builtin harness evaluates a seeded random
subset (the same for the same seed, in dataset order) instead of the first N; `nemo.sampling` in the JUnit and the
HTML report says which was used; harnesses that cannot take sample ids say `first-n`."""

from __future__ import annotations

from pathlib import Path

from pytest_nemo_eval.harness.builtin.dataset import load_jsonl
from pytest_nemo_eval.harness.builtin.runner import subset
from pytest_nemo_eval.harness.builtin.tasks import find_task
from pytest_nemo_eval.harness.invocation import HarnessInvocation, describe_sampling
from pytest_nemo_eval.results import RunResult
from pytest_nemo_eval.samples import read_samples
from .inner_run import junit_cases

SUITE = """\
name: sampled
seed: 1234
defaults: {runtime: local, endpoint_type: completions, parallelism: 4}
benchmarks:
  - {name: addition, harness: builtin, task: demo_addition, thresholds: {exact_match: {min: 0.5}}}
"""


def test_a_seeded_subset_is_reproducible_spread_and_in_dataset_order():
    records = [{"id": str(i)} for i in range(200)]
    seven = subset(records, 10, 7)
    assert seven == subset(records, 10, 7) and len(seven) == 10
    assert seven != subset(records, 10, 8) and seven != records[:10]
    positions = [int(r["id"]) for r in seven]
    assert positions == sorted(positions) and max(positions) >= 100  # spread over the dataset, kept in order
    assert subset(records, 10, None) == records[:10] and subset(records, 500, 7) == records
    assert describe_sampling("builtin", None, 7) == "all"
    assert describe_sampling("builtin", 10, 7) == "seeded-random n=10 seed=7"
    assert describe_sampling("lm-evaluation-harness", 10, 7) == "first-n n=10"  # takes no sample ids: said so
    builtin = HarnessInvocation(harness="builtin", task="t", model_id="m", model_url="http://x/v1/completions",
                                output_dir=Path("o"), limit_samples=10, sample_seed=7)
    assert builtin.all_overrides()["config.params.sample_seed"] == 7
    other = builtin.model_copy(update={"harness": "simple-evals"})
    assert "config.params.sample_seed" not in other.all_overrides() and other.sampling == "first-n n=10"


def _run(pytester, name: str, endpoint: str, *args: str) -> Path:
    junit = pytester.path / name / "gate.xml"
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "sampled.yaml", f"--nemo-endpoint={endpoint}", "--nemo-limit-samples=6",
        "--nemo-output-dir", str(pytester.path / name / "out"), "--junitxml", str(junit), *args)
    result.assert_outcomes(passed=1)
    return junit


def test_the_builtin_harness_evaluates_the_seeded_subset_and_the_reports_say_so(pytester, endpoint):
    (pytester.path / "sampled.yaml").write_text(SUITE)
    dataset = [r["id"] for r in load_jsonl(find_task("builtin.demo_addition").data_path(), ["id"])]
    seeded = _run(pytester, "seeded", endpoint, "--nemo-sample-seed=7")
    first = _run(pytester, "first", endpoint)
    (_, seeded_props), = junit_cases(seeded).values()
    (_, first_props), = junit_cases(first).values()
    assert seeded_props["nemo.sampling"] == "seeded-random n=6 seed=7"
    assert first_props["nemo.sampling"] == "first-n n=6"
    evaluated = {}
    for name, junit in (("seeded", seeded), ("first", first)):
        (result,) = RunResult.read_json(junit.with_name("gate.results.json")).benchmarks
        evaluated[name] = list(read_samples(result.samples_file))
        assert result.samples == 6 and len(evaluated[name]) == 6
    assert evaluated["first"] == dataset[:6]
    assert evaluated["seeded"] != dataset[:6] and set(evaluated["seeded"]) <= set(dataset)
    assert evaluated["seeded"] == sorted(evaluated["seeded"], key=dataset.index)  # dataset order
    assert "sampling seeded-random n=6 seed=7" in seeded.with_suffix(".html").read_text()
