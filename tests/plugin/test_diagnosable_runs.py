"""A benchmark that errors keeps what its run produced, and says why in the test's call phase.

One inner run under xdist against the scripted upstream (no model): the builtin harness (a real
process) scores a task whose threshold names a metric it does not produce; the fake eval-factory
harness (tests/harness/fake_harness.py installed as `nemo-evaluator`, a real process) once sends
requests through the real proxy and then crashes, once writes its results.yml and then exits 1.
Each is a call-phase failure to pytest, `error` in our result (JUnit `nemo.status`, JSON, the
report reader), and keeps its scores and proxy counters, the evidence for the diagnosis.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pytest_nemo_eval.report.junit import read_reports
from pytest_nemo_eval.results import RunResult
from tests.adapters.scripted_upstream import ScriptedUpstream
from tests.harness.conftest import fake_harness  # noqa: F401 - the fake eval-factory harness on PATH

from .inner_run import junit_cases

SAMPLES = 5
REPORTS = """
    import json
    from pathlib import Path

    def pytest_runtest_logreport(report):
        with open(Path(__file__).parent / "reports.jsonl", "a") as out:
            out.write(json.dumps({"name": report.nodeid.split("::")[-1], "when": report.when,
                                  "outcome": report.outcome, "text": report.longreprtext}) + "\\n")
"""


def test_errors_keep_scores_and_proxy_stats_and_fail_in_the_call_phase(
    run_inner, suite_file, pytester, fake_harness  # noqa: F811
):
    pytester.makeconftest(REPORTS)
    suite_file("evidence", """\
        defaults: {runtime: local}
        benchmarks:
          - {name: unknown_metric, harness: builtin, task: demo_addition, thresholds: {accuracy: {min: 0.5}}}
          - {name: crashed, harness: simple-evals, task: mmlu, params: {fake_mode: crash}}
          - {name: scored_then_failed, harness: simple-evals, task: mmlu, params: {fake_mode: scored_then_fail},
             thresholds: {acc: {min: 0.5}}}
    """)
    with ScriptedUpstream() as upstream:
        result = run_inner("evidence.yaml", f"--nemo-endpoint={upstream.url}", f"--nemo-limit-samples={SAMPLES}",
                           "-n", "2", subprocess=True)
    result.assert_outcomes(failed=3)  # pytest's word for a call-phase exception; ours follows

    reports = [json.loads(line) for line in (pytester.path / "reports.jsonl").read_text().splitlines()]
    failed = {r["name"]: r for r in reports if r["outcome"] == "failed"}
    assert set(failed) == {"unknown_metric", "crashed", "scored_then_failed"}
    assert {r["when"] for r in failed.values()} == {"call"}
    assert all(r["outcome"] == "passed" for r in reports if r["when"] == "setup")
    crash_text = re.sub(r"^\[gw\d+\] .*\n", "", failed["crashed"]["text"])  # xdist's worker line first
    assert crash_text.startswith("Diagnosis: the harness crashed: RuntimeError: fake harness lost its way after 3 "
                                 "requests\nHarnessFailed: "), crash_text[:500]
    assert "--- last 40 lines of " in crash_text and "BenchmarkError" not in result.stdout.str()  # no traceback

    cases = junit_cases(pytester.path / "junit.xml")
    assert {name: (element, props["nemo.status"]) for name, (element, props) in cases.items()} == {
        name: ("failed", "error") for name in failed}

    props = cases["crashed"][1]  # no scores: the proxy's counters are the evidence
    assert props["nemo.error"].startswith("Diagnosis: the harness crashed: RuntimeError: ")
    assert props["nemo.proxy.requests"] == "3" and props["nemo.proxy.errors"] == "0" and upstream.script.calls == \
        3 + SAMPLES
    assert not [key for key in props if key.startswith("nemo.metric.")]

    props = cases["unknown_metric"][1]  # the harness scored; the threshold names no metric it produced
    assert props["nemo.error"].startswith("UnknownMetricError in evidence::unknown_metric: threshold(s) on 'accuracy'")
    assert 0 <= float(props["nemo.metric.exact_match.value"]) <= 1 and "nemo.metric.exact_match.verdict" not in props
    assert props["nemo.proxy.requests"] == str(SAMPLES) and props["nemo.samples"] == str(SAMPLES)

    props = cases["scored_then_failed"][1]  # results.yml written, then exit 1: its scores, unjudged
    assert props["nemo.error"].startswith("HarnessFailed: ") and "exited with status 1" in props["nemo.error"]
    assert props["nemo.metric.acc.value"] == "0.75" and props["nemo.metric.acc.stderr"] == "0.1"
    assert props["nemo.metric.acc.threshold"] == ">= 0.5" and "nemo.metric.acc.verdict" not in props
    assert Path(props["nemo.results_file"]).is_file() and "nemo.outcome" not in props
    result.stdout.fnmatch_lines(["evidence::scored_then_failed*acc*0.7500 ± 0.1000*>= 0.5*ERROR"])

    # our typed result says `error` everywhere: the JSON beside the JUnit file, and the JUnit read back
    run = RunResult.read_json(pytester.path / "junit.results.json")
    for results in (run.benchmarks, read_reports([pytester.path / "junit.xml"]).benchmarks):
        by_name = {r.name: r for r in results}
        assert {name: r.status for name, r in by_name.items()} == {name: "error" for name in failed}
        assert by_name["scored_then_failed"].metrics["acc"].value == 0.75
        assert by_name["crashed"].proxy["requests"] == 3 and not by_name["crashed"].metrics
        assert (by_name["crashed"].message or "").startswith("Diagnosis: the harness crashed: ")


def test_python_api_error_keeps_its_result_like_a_suite_item(run_inner, pytester):
    """`nemo_benchmark` raises `BenchmarkError` for a threshold on a metric the builtin harness does not produce;
    its result, `error` with the scores and counters of the run, joins the run's results as a suite item's does."""
    pytester.makepyfile(test_api="""
        import pytest
        from pytest_nemo_eval.runner.execute import BenchmarkError

        def test_unknown_metric(nemo_benchmark):
            with pytest.raises(BenchmarkError, match="UnknownMetricError in python::addition") as raised:
                nemo_benchmark({"name": "addition", "harness": "builtin", "task": "demo_addition",
                                "thresholds": {"accuracy": {"min": 0.5}}}, defaults={"runtime": "local"})
            assert raised.value.outcome.proxy["requests"] > 0 and "exact_match" in raised.value.outcome.scores
    """)
    with ScriptedUpstream() as upstream:
        result = run_inner("test_api.py", f"--nemo-endpoint={upstream.url}", f"--nemo-limit-samples={SAMPLES}")
    result.assert_outcomes(passed=1)
    (errored,) = RunResult.read_json(pytester.path / "junit.results.json").benchmarks
    assert errored.benchmark == "python::addition" and errored.status == "error" and errored.outcome is None
    assert (errored.message or "").startswith("UnknownMetricError in python::addition: threshold(s) on 'accuracy'")
    assert 0 <= errored.metrics["exact_match"].value <= 1 and errored.metrics["exact_match"].verdict is None
    assert errored.proxy["requests"] == SAMPLES and errored.samples == SAMPLES and errored.runtime == "local"


def test_scores_of_a_run_whose_model_requests_failed_are_an_error(run_inner, suite_file, pytester,
                                                                  fake_harness):  # noqa: F811
    """A harness that scores error replies as wrong answers (the fake harness, a real process, as BFCL
    does) must not pass a gate: all 3 requests refused -> error; 1 of 3 under `max_request_errors: 0.5`
    -> its scores count."""
    suite_file("refused", """\
        defaults: {runtime: local, params: {fake_mode: scored_through_errors}}
        benchmarks:
          - {name: all_refused, harness: simple-evals, task: mmlu, thresholds: {acc: {min: 0.5}}}
          - {name: one_refused, harness: simple-evals, task: mmlu, thresholds: {acc: {min: 0.5}},
             max_request_errors: 0.5}
    """)
    with ScriptedUpstream() as upstream:
        upstream.script.update({"fail_next": 4, "fail_status": 400})  # the first run's 3, the second's first
        result = run_inner("refused.yaml", f"--nemo-endpoint={upstream.url}", subprocess=True)
    result.assert_outcomes(failed=1, passed=1)
    cases = junit_cases(pytester.path / "junit.xml")
    status, props = cases["all_refused"]
    assert props["nemo.status"] == "error" and props["nemo.proxy.errors"] == props["nemo.proxy.requests"] == "3"
    assert props["nemo.error"].startswith("Diagnosis: the model answered 3 of 3 requests with an error (last: 400")
    assert props["nemo.metric.acc.value"] == "0.75" and "nemo.metric.acc.verdict" not in props  # evidence, unjudged
    status, props = cases["one_refused"]
    assert status == "passed" and props["nemo.proxy.errors"] == "1" and props["nemo.metric.acc.verdict"] == "pass"
