"""Suites run inside pytest against the separately started demo server (`--nemo-endpoint`):
verdicts and their messages, confidence mode, errors vs failures, timeouts, the
baseline gate, JUnit properties, the Python API. Real model, real proxy, real harness."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import time
from pathlib import Path

import psutil

from pytest_nemo_eval.report.cli import main as report_main
from pytest_nemo_eval.results import RunResult
from .inner_run import LIMIT, REPO, junit_cases, junit_suite_properties

SMOKE_TASKS = ["demo_addition", "demo_reversal", "demo_addition_mc", "demo_addition_code", "demo_tool_call",
               "demo_chat_thinking"]


def test_smoke_suite_passes_with_scores_in_junit_and_terminal(run_inner, pytester, endpoint):
    suite = pytester.path / "smoke.yaml"
    shutil.copy(REPO / "suites" / "smoke.yaml", suite)
    result = run_inner("smoke.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}",
                       "--nemo-progress-interval=0.5")
    result.assert_outcomes(passed=len(SMOKE_TASKS))
    result.stdout.fnmatch_lines(["*= nemo-eval scores =*", "benchmark*metric*score*threshold*verdict",
                                 "smoke::demo_addition*exact_match*±*>= 0.6*PASS"])
    assert "[nemo-eval] progress smoke.demo_" in result.stdout.str()
    cases = junit_cases(pytester.path / "junit.xml")
    assert set(cases) == set(SMOKE_TASKS)
    for name, (status, props) in cases.items():
        assert status == "passed"
        assert props["nemo.benchmark"] == f"smoke::{name}"
        assert props["nemo.harness"] == f"builtin.{name}" and props["nemo.runtime"] == "local"
        assert props["nemo.samples"] == LIMIT and float(props["nemo.duration_s"]) > 0
        assert int(props["nemo.proxy.requests"]) >= int(LIMIT) and props["nemo.proxy.errors"] == "0"
        assert float(props["nemo.proxy.latency_p50_ms"]) > 0
        verdicts = {k: v for k, v in props.items() if k.endswith(".verdict")}
        assert verdicts and set(verdicts.values()) == {"pass"}
        for key in verdicts:
            metric = key[: -len(".verdict")]
            assert 0 <= float(props[f"{metric}.value"]) <= 1 and props[f"{metric}.threshold"].startswith(">=")
    assert "nemo.metric.acc_norm.value" in cases["demo_addition_mc"][1]  # unthresholded metrics reported too
    assert "nemo.metric.acc.ci" in cases["demo_addition_mc"][1]  # confidence mode in smoke.yaml
    thinking = cases["demo_chat_thinking"][1]  # the demo thought first (reasoning_content), none of it cut off
    assert int(thinking["nemo.proxy.reasoning_tokens"]) > 0 and thinking["nemo.proxy.truncated_reasoning"] == "0"
    suite_props = junit_suite_properties(pytester.path / "junit.xml")
    assert suite_props["nemo.endpoint"] == endpoint and suite_props["nemo.deployments"] == "0"
    assert suite_props["nemo.suite.smoke.sha256"] == hashlib.sha256(suite.read_bytes()).hexdigest()
    assert suite_props["nemo.seed"] == "1234"
    for key in ("nemo.version.plugin", "nemo.version.megatron_core", "nemo.version.pytriton", "nemo.model_id"):
        assert suite_props[key]


def test_failure_message_errors_and_unknown_metric(run_inner, suite_file, pytester, endpoint):
    """A missed threshold is a FAILURE with every metric in the message; a harness
    problem or a threshold on a metric that does not exist is an ERROR in our result
    (`nemo.status`), reported by pytest as a call-phase failure (JUnit <failure>)."""
    suite_file("verdicts", """\
        benchmarks:
          - name: too_high
            harness: builtin
            task: demo_addition
            thresholds:
              exact_match: {min: 1.01}
          - name: misspelt_task
            harness: builtin
            task: demo_adition
          - name: unknown_metric
            harness: builtin
            task: demo_addition_mc
            thresholds:
              accuracy: {min: 0.5}
        defaults: {runtime: local}
    """)
    result = run_inner("verdicts.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}")
    result.assert_outcomes(failed=3)
    cases = junit_cases(pytester.path / "junit.xml")
    status, props = cases["too_high"]
    value = float(props["nemo.metric.exact_match.value"])
    stderr = float(props["nemo.metric.exact_match.stderr"])
    assert status == "failed" and props["nemo.status"] == "failed" and props["nemo.metric.exact_match.verdict"] == "fail"
    result.stdout.fnmatch_lines([
        "benchmark 'too_high': 1 failed, 0 inconclusive",
        f"  exact_match = {value:.4f} ± {stderr:.4f} threshold >= 1.01: FAIL, missed by {1.01 - value:.4f}",
    ])
    assert cases["misspelt_task"][1]["nemo.status"] == "error"
    result.stdout.fnmatch_lines(["*UnknownTask: Unknown builtin task 'demo_adition'.*Did you mean: builtin.demo_addition*"])
    assert cases["unknown_metric"][1]["nemo.status"] == "error"
    assert "nemo.metric.acc.value" in cases["unknown_metric"][1]  # the scores it produced stay
    result.stdout.fnmatch_lines([
        "*UnknownMetricError in verdicts::unknown_metric: threshold(s) on 'accuracy' but the harness produced "
        "no such metric. Metrics it produced: acc, acc.acc, acc_norm, *"
    ])


def _half_wrong_sums_task(folder) -> str:
    """A task whose every other target is wrong: any demo that learned addition scores strictly
    between 0 and 1 on it (about half), with a stderr above 0, however good this machine's demo is."""
    lines = (REPO / "pytest_nemo_eval" / "harness" / "builtin" / "data" / "demo_addition.jsonl").read_text().splitlines()
    items = [json.loads(line) for line in lines]
    for item in items[1::2]:
        item["answer"] = str(int(item["answer"]) + 1)
    folder.mkdir()
    (folder / "half_wrong_sums.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    spec = (REPO / "pytest_nemo_eval" / "harness" / "builtin" / "tasks" / "demo_addition.yaml").read_text()
    (folder / "half_wrong_sums.yaml").write_text(spec.replace("../data/demo_addition.jsonl", "half_wrong_sums.jsonl"))
    return "half_wrong_sums"


def test_confidence_mode_pass_fail_and_inconclusive_policies(run_inner, suite_file, pytester, endpoint, monkeypatch):
    """Thresholds are placed around a measured score: the 95% interval (Wilson's: exact_match is a proportion) lies
    above, below, or across them; across is inconclusive and the policy decides."""
    tasks = pytester.path / "tasks"
    task = _half_wrong_sums_task(tasks)
    monkeypatch.setenv("NEMO_EVAL_TASKS_PATH", str(tasks))
    suite_file("measure", f"benchmarks:\n  - {{name: {task}, harness: builtin, task: {task}, runtime: local}}\n")
    assert run_inner("measure.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}").ret == 0
    metric = "exact_match"
    props = junit_cases(pytester.path / "junit.xml")[task][1]
    value, stderr = float(props[f"nemo.metric.{metric}.value"]), float(props[f"nemo.metric.{metric}.stderr"])
    assert 0 < value < 1 and stderr > 0, (value, stderr)

    def bench(name: str, threshold: float, policy: str) -> str:
        return (f"  - {{name: {name}, harness: builtin, task: {task}, runtime: local, confidence: 0.95, "
                f"inconclusive: {policy}, thresholds: {{'{metric}': {{min: {threshold!r}}}}}}}\n")

    suite_file("confidence", "benchmarks:\n"
               + bench("clearly_above", value - 3 * stderr, "fail")
               + bench("clearly_below", value + 3 * stderr, "pass")
               + bench("straddle_fail", value + stderr, "fail")
               + bench("straddle_warn", value + stderr, "warn")
               + bench("straddle_pass", value + stderr, "pass"))
    result = run_inner("confidence.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}")
    cases = junit_cases(pytester.path / "junit.xml")
    outcome = {name: (status, props[f"nemo.metric.{metric}.verdict"], props["nemo.outcome"])
               for name, (status, props) in cases.items()}
    assert outcome == {
        "clearly_above": ("passed", "pass", "pass"),
        "clearly_below": ("failed", "fail", "fail"),
        "straddle_fail": ("failed", "inconclusive", "fail"),
        "straddle_warn": ("passed", "inconclusive", "warn"),
        "straddle_pass": ("passed", "inconclusive", "pass"),
    }
    result.stdout.fnmatch_lines(["*NemoInconclusiveWarning: benchmark 'straddle_warn': 0 failed, 1 inconclusive at 95% confidence*"])
    result.stdout.fnmatch_lines(["benchmark 'straddle_fail': 0 failed, 1 inconclusive at 95% confidence (inconclusive policy: fail)",
                                 f"  {metric} = {value:.4f} ± {stderr:.4f} (CI *, Wilson) threshold >= *: INCONCLUSIVE*"])


def test_timeout_kills_a_hung_harness_and_the_next_benchmark_runs(run_inner, suite_file, pytester, endpoint, monkeypatch):
    """The hung harness is tests/harness/fake_harness.py installed as `nemo-evaluator`
    (a real process standing in for an eval-factory harness, which cannot be installed here)."""
    bin_dir = pytester.path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nemo-evaluator"
    script.write_text(f"#!{sys.executable}\n" + (REPO / "tests" / "harness" / "fake_harness.py").read_text())
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    pidfile = pytester.path / "fake.pids"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HARNESS_MODE", "hang")
    monkeypatch.setenv("FAKE_HARNESS_PIDFILE", str(pidfile))
    suite_file("hang", """\
        defaults: {runtime: local}
        benchmarks:
          - {name: hung, harness: simple-evals, task: mmlu, timeout_s: 3}
          - {name: after, harness: builtin, task: demo_addition, thresholds: {exact_match: {min: 0.3}}}
    """)
    started = time.monotonic()
    result = run_inner("hang.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}")
    assert time.monotonic() - started < 120
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*HarnessTimeout*"])
    cases = junit_cases(pytester.path / "junit.xml")
    assert cases["hung"][1]["nemo.status"] == "error" and cases["after"][0] == "passed"
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2 and not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)


def test_baseline_regression_detected_and_non_regression_passes(run_inner, suite_file, pytester, endpoint):
    suite_file("gate", """\
        defaults: {runtime: local}
        benchmarks:
          - {name: addition, harness: builtin, task: demo_addition, thresholds: {exact_match: {min: 0.3}}}
    """)
    args = ["gate.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}"]
    result = run_inner(*args)
    result.assert_outcomes(passed=1)
    first = pytester.path / "first.xml"
    shutil.move(pytester.path / "junit.xml", first)

    result = run_inner(*args, f"--nemo-baseline={first}")
    result.assert_outcomes(passed=1)  # same model, same scores: no regression
    assert report_main([str(pytester.path / "junit.xml"), "--baseline", str(first)]) == 0

    # A baseline from a "better" model: the same report with exact_match raised by 0.5.
    (_, props), = junit_cases(first).values()
    value = float(props["nemo.metric.exact_match.value"])
    better = pytester.path / "better.xml"
    better.write_text(first.read_text().replace(
        f'name="nemo.metric.exact_match.value" value="{props["nemo.metric.exact_match.value"]}"',
        f'name="nemo.metric.exact_match.value" value="{value + 0.5!r}"'))
    result = run_inner(*args, f"--nemo-baseline={better}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"benchmark 'addition' regressed versus baseline {better}:",
                                 f"  gate::addition exact_match: {value + 0.5:.4f} -> {value:.4f} (-0.5000; allowed drop *)"])
    props = junit_cases(pytester.path / "junit.xml")["addition"][1]
    assert props["nemo.outcome"] == "regressed" and props["nemo.baseline.exact_match.verdict"] == "NO-GO"
    assert report_main([str(pytester.path / "junit.xml"), "--baseline", str(better)]) == 1

    # the suite's gate policy decides what the NO-GO does: advisory only reports it; supporting fails unless
    # --nemo-gate-lenient, which makes it a warning (the runs below reuse the proxy's cached answers)
    for tier, extra, outcome in (("advisory", (), "pass"), ("supporting", ("--nemo-gate-lenient",), "warn")):
        suite_file("gate", f"""\
            defaults: {{runtime: local, gate: {{tier: {tier}}}}}
            benchmarks:
              - {{name: addition, harness: builtin, task: demo_addition, thresholds: {{exact_match: {{min: 0.3}}}}}}
        """)
        result = run_inner(*args, f"--nemo-baseline={better}", *extra)
        result.assert_outcomes(passed=1)
        props = junit_cases(pytester.path / "junit.xml")["addition"][1]
        assert (props["nemo.baseline.exact_match.verdict"], props["nemo.baseline.exact_match.tier"]) == ("NO-GO", tier)
        assert props["nemo.outcome"] == outcome and props["nemo.baseline.exact_match.regressed"] == "false"
        assert ("versus baseline" in result.stdout.str()) == (tier == "supporting")  # the warning's text
    # the deprecated --nemo-baseline-tolerance sets the margin (here above the whole drop interval: GO), warning
    result = run_inner(*args, f"--nemo-baseline={better}", "--nemo-baseline-tolerance=0.95")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*NemoDeprecatedOption: --nemo-baseline-tolerance=0.95 is deprecated*"])
    props = junit_cases(pytester.path / "junit.xml")["addition"][1]
    assert props["nemo.baseline.exact_match.verdict"] == "GO" and float(props["nemo.baseline.exact_match.margin"]) == 0.95


def test_python_api_fixture(run_inner, pytester, endpoint):
    pytester.makepyfile(test_api="""
        import pytest
        from pytest_nemo_eval.runner.execute import BenchmarkFailed

        SPEC = {"name": "addition", "harness": "builtin", "task": "demo_addition"}

        def test_scores_and_check(nemo_benchmark, nemo_deployment, nemo_proxy):
            outcome = nemo_benchmark({**SPEC, "thresholds": {"exact_match": {"min": 0.3}}},
                                     defaults={"runtime": "local"})
            outcome.check()
            assert 0.3 <= outcome.scores["exact_match"].value <= 1
            assert nemo_proxy.stats("python.addition")["requests"] > 0
            assert nemo_deployment.model_id

        def test_miss_raises_with_message(nemo_benchmark):
            outcome = nemo_benchmark({**SPEC, "thresholds": {"exact_match": {"max": 0.0}}},
                                     defaults={"runtime": "local"})
            with pytest.raises(BenchmarkFailed, match="exact_match = .* threshold <= 0: FAIL"):
                outcome.check()
    """)
    result = run_inner("test_api.py", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}")
    result.assert_outcomes(passed=2)
    # the Python API's results join the run's results (JSON file beside the JUnit file, exporters)
    run = RunResult.read_json(pytester.path / "junit.results.json")
    assert sorted(r.status for r in run.benchmarks) == ["failed", "passed"]  # the second missed `max: 0`
    assert {r.benchmark for r in run.benchmarks} == {"python::addition"}
    assert all(0 <= r.metrics["exact_match"].value <= 1 and r.samples == int(LIMIT) for r in run.benchmarks)


def test_release_suite_skips_each_benchmark_saying_what_is_missing(run_inner, pytester, endpoint):
    """release.yaml needs eval-factory images from nvcr.io; here there is no registry (and
    maybe no Docker daemon), so every benchmark is a skip whose reason names the gap."""
    shutil.copy(REPO / "suites" / "release.yaml", pytester.path / "release.yaml")
    result = run_inner("release.yaml", f"--nemo-endpoint={endpoint}")
    result.assert_outcomes(skipped=5)
    cases = junit_cases(pytester.path / "junit.xml")
    assert {status for status, _ in cases.values()} == {"skipped"}
    for name in ("gsm8k", "mmlu", "ifeval", "humaneval", "mmlu_pro"):
        result.stdout.fnmatch_lines([f"SKIPPED*release::{name} needs *"])
    skipped_lines = [line for line in result.stdout.lines if line.startswith("SKIPPED")]
    assert all("Docker (no Docker daemon is reachable" in line or "nvcr.io is unreachable" in line
               for line in skipped_lines), skipped_lines
    assert "GPU" not in "".join(skipped_lines)  # an adopted endpoint needs no local GPU


def test_early_stop_ends_a_benchmark_once_its_verdict_is_settled(run_inner, suite_file, pytester, endpoint):
    """`early_stop: true` on the demo: addition (a demo that learned it answers nearly all right) stops as soon
    as the betting confidence sequence clears `min: 0.3`, before the LIMIT samples; the JUnit says how many
    samples it used, of how many, why, and the metric's verdict and interval are the sequence's (replayed
    here from the per-sample file with confseq.BettingCS)."""
    from pytest_nemo_eval.confseq import BettingCS

    suite_file("early", """\
        defaults: {runtime: local, early_stop: true}
        benchmarks:
          - {name: addition, harness: builtin, task: demo_addition, thresholds: {exact_match: {min: 0.3}}}
    """)
    result = run_inner("early.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}")
    result.assert_outcomes(passed=1)
    props = junit_cases(pytester.path / "junit.xml")["addition"][1]
    record = json.loads(props["nemo.early_stop"])
    assert record["reason"] == "pass" and record["samples_planned"] == int(LIMIT)
    assert record["samples_used"] < int(LIMIT) and props["nemo.samples"] == str(record["samples_used"])
    scores = [json.loads(line)["scores"]["exact_match"]
              for line in Path(props["nemo.samples_file"]).read_text().splitlines() if line.strip()]
    assert len(scores) == record["samples_used"]
    cs = BettingCS(0.05, extra_points=[0.3])
    settled = next(t for t, s in enumerate(scores, 1) if (cs.update(s) or cs.decision(0.3) is not None))
    assert settled == record["samples_used"]
    assert props["nemo.metric.exact_match.verdict"] == "pass"
    assert props["nemo.metric.exact_match.ci"] == f"[{record['ci_low']:.6g}, {record['ci_high']:.6g}]"
    assert props["nemo.metric.exact_match.ci_method"] == "betting CS"
