"""The typed results: one `BenchmarkResult` per benchmark, written to and read back from JUnit
by one module, announced through our own hooks (an exporter in a user's conftest.py), sent
from xdist workers as one JSON document, and saved as a JSON results file beside the JUnit file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from pytest_nemo_eval.gate import Comparison
from pytest_nemo_eval.report.junit import read_reports
from pytest_nemo_eval.report.properties import describe_threshold, from_properties, parse_threshold, to_properties
from pytest_nemo_eval.results import BenchmarkResult, MetricResult, RunResult
from pytest_nemo_eval.samples import read_samples
from pytest_nemo_eval.suite import GatePolicy, Threshold

from .inner_run import LIMIT, junit_cases


def _result() -> BenchmarkResult:
    return BenchmarkResult(
        benchmark="smoke::addition",
        status="failed",
        outcome="regressed",
        metrics={
            "exact_match": MetricResult(value=0.55, stderr=0.0497, count=100, ci_low=0.4526, ci_high=0.6474, ci_method="Wilson",
                                        threshold=Threshold(min=0.5), direction="higher", verdict="pass"),
            "error_rate": MetricResult(value=0.125, threshold=Threshold(max=0.2), direction="lower", verdict="pass"),
            "band": MetricResult(value=0.3, threshold=Threshold(min=0.25, max=0.75), verdict="pass"),
            "acc_norm": MetricResult(value=1e-7),
        },
        harness="builtin.demo_addition", runtime="local", runtime_reason="runtime local: set by the suite",
        image_digest="sha256:ab", code_isolation="bubblewrap", samples=100, duration_s=12.25,
        suite_sha256="f" * 64, seed=1234, samples_file="runs/smoke.addition/samples.jsonl",
        proxy={"requests": 100.0, "errors": 0.0, "latency_p50_ms": 3.5},
        baseline=[Comparison(benchmark="smoke::addition", metric="exact_match", baseline=0.9, current=0.55,
                             allowed=0.1, higher_is_better=True, regressed=True)],
        gate=GatePolicy(tier="supporting", max_drop=0.02), multiple_comparisons="bh",
        early_stop={"metric": "exact_match", "samples_used": 37, "samples_planned": 100, "reason": "pass",
                    "ci_low": 0.51, "ci_high": 0.9, "alpha": 0.05},
    )


def test_result_round_trips_through_junit_properties():
    result = _result()
    back = from_properties(to_properties(result), status="failed")
    # JUnit holds the result itself; the baseline comparison is recomputed by whoever reads it
    assert back == result.model_copy(update={"baseline": []})
    assert back.regressions == [] and result.regressions[0].metric == "exact_match"
    assert dict(to_properties(result))["nemo.metric.error_rate.direction"] == "lower"
    assert from_properties([("nemo.samples", "3")]) is None  # not a benchmark's properties


def test_an_errored_result_reads_back_as_error_with_its_scores():
    """A harness error is pytest's call-phase <failure>; `nemo.status` keeps it an error, scores and all."""
    errored = _result().model_copy(update={"status": "error", "outcome": None, "baseline": [],
                                            "message": "Diagnosis: the harness crashed: RuntimeError: x"})
    props = to_properties(errored)
    assert dict(props)["nemo.status"] == "error" and dict(props)["nemo.error"] == errored.message
    assert from_properties(props, status="failed") == errored
    assert from_properties([p for p in props if p[0] != "nemo.status"], status="failed").status == "failed"  # old files


def test_threshold_text_parses_back_exactly():
    """The JUnit property (describe_threshold) keeps every digit; the human form (Threshold.describe, :g)
    parses back to 6 significant digits, so it is not what the JUnit file stores."""
    for threshold in (Threshold(min=0.5), Threshold(max=1e-3), Threshold(min=-2.5, max=3), Threshold(min=0.123456789),
                      Threshold(min=1 / 3, max=0.987654321987)):
        assert parse_threshold(describe_threshold(threshold)) == threshold
        human = parse_threshold(threshold.describe())
        for got, want in ((human.min, threshold.min), (human.max, threshold.max)):
            assert (got is None) == (want is None) and (want is None or got == pytest.approx(want, rel=5e-6))
        stored = dict(to_properties(_result().model_copy(update={"metrics": {"m": MetricResult(
            value=0.5, threshold=threshold)}})))["nemo.metric.m.threshold"]
        assert parse_threshold(stored) == threshold
    assert threshold.describe() == "[0.333333, 0.987654]"  # the rounding the exact form exists for
    assert parse_threshold("about 0.5") is None


def test_run_result_json_file_round_trips(tmp_path):
    run = RunResult(provenance={"nemo.model_id": "demo"}, benchmarks=[_result()])
    path = run.write_json(tmp_path / "out" / "gate.results.json")
    assert RunResult.read_json(path) == run
    assert json.loads(path.read_text())["benchmarks"][0]["metrics"]["exact_match"]["threshold"] == {"min": 0.5, "max": None}


CONFTEST_EXPORTER = """
    import json
    from pathlib import Path

    def pytest_nemo_benchmark_result(result, config):
        with open(Path(config.rootpath) / "exported.jsonl", "a") as handle:
            handle.write(result.model_dump_json() + "\\n")

    def pytest_nemo_run_result(run, config):
        (Path(config.rootpath) / "exported_run.json").write_text(run.model_dump_json())

    class UnreachableExporter:
        def pytest_nemo_run_result(self, run, config):
            raise ConnectionError("http://127.0.0.1:9 refused the connection")

    def pytest_configure(config):
        config.pluginmanager.register(UnreachableExporter(), "unreachable-exporter")
"""


def test_conftest_exporter_and_json_results_under_xdist(run_inner, suite_file, pytester, endpoint):
    """Three benchmarks (pass, fail, error) on two xdist workers: the controller announces each
    result once to a conftest exporter, an exporter that raises (or an unreachable MLflow server)
    costs one line and nothing else, and the JSON results file beside the JUnit file holds exactly
    the JUnit file's numbers."""
    pytester.makeconftest(textwrap.dedent(CONFTEST_EXPORTER))
    suite_file("exported", """\
        defaults: {runtime: local}
        benchmarks:
          - {name: passes, harness: builtin, task: demo_addition, thresholds: {exact_match: {min: 0.0}}}
          - {name: too_high, harness: builtin, task: demo_reversal, thresholds: {exact_match: {min: 1.01}}}
          - {name: misspelt, harness: builtin, task: demo_adition}
    """)
    result = run_inner("exported.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}",
                       "-n", "2", "--nemo-mlflow-uri=http://127.0.0.1:9", subprocess=True)
    result.assert_outcomes(passed=1, failed=2)  # the harness error too fails in the call phase; our status says error
    # an unreachable MLflow server: one line; the results below are all still there
    assert "[nemo-eval] MLflow export to http://127.0.0.1:9 failed: " in result.stdout.str()
    assert ("[nemo-eval] exporter UnreachableExporter failed: ConnectionError: "
            "http://127.0.0.1:9 refused the connection") in result.stdout.str()

    exported = [BenchmarkResult.model_validate_json(line)
                for line in (pytester.path / "exported.jsonl").read_text().splitlines()]
    assert sorted((r.name, r.status) for r in exported) == [
        ("misspelt", "error"), ("passes", "passed"), ("too_high", "failed")]
    run = RunResult.read_json(pytester.path / "junit.results.json")  # beside junit.xml
    assert RunResult.model_validate_json((pytester.path / "exported_run.json").read_text()) == run
    assert run.provenance["nemo.endpoint"] == endpoint and run.provenance["nemo.seed"] == "1234"
    by_name = {r.name: r for r in run.benchmarks}
    # per-sample outputs in samples.py's shape, kept beside the JUnit file; their mean is the score
    kept = read_samples(by_name["passes"].samples_file)
    assert Path(by_name["passes"].samples_file).parent == pytester.path / "junit.samples"
    assert len(kept) == int(LIMIT) and all(r.prompt and r.expected is not None for r in kept.values())
    mean = sum(r.scores["exact_match"] for r in kept.values()) / len(kept)
    assert mean == pytest.approx(by_name["passes"].metrics["exact_match"].value)
    assert "UnknownTask" in (by_name["misspelt"].message or "") and not by_name["misspelt"].metrics
    assert by_name["too_high"].outcome == "fail" and by_name["too_high"].metrics["exact_match"].verdict == "fail"

    # the JSON file and the JUnit file say the same, number for number
    cases = junit_cases(pytester.path / "junit.xml")
    from_junit = read_reports([pytester.path / "junit.xml"]).by_benchmark()
    for name in ("passes", "too_high"):
        status, props = cases[name]
        result_json = by_name[name]
        assert result_json.status == status == props["nemo.status"]
        assert result_json.samples == int(LIMIT) == int(props["nemo.samples"])
        assert result_json.proxy["requests"] == float(props["nemo.proxy.requests"]) >= int(LIMIT)
        metric = result_json.metrics["exact_match"]
        assert metric.value == float(props["nemo.metric.exact_match.value"])
        assert metric.stderr == float(props["nemo.metric.exact_match.stderr"])
        assert metric.verdict == props["nemo.metric.exact_match.verdict"]
        assert from_junit[f"exported::{name}"].metrics == result_json.metrics
