"""MLflow export against a real `mlflow server` (tests/plugin/mlflow_server.py), read back with
MlflowClient: every score, stderr, verdict and artifact; a re-export updates the same run; an
unreachable server costs one line and never the gate's results."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from pytest_nemo_eval.report.cli import main as report_main
from pytest_nemo_eval.report.mlflow_export import RUN_KEY_TAG, mlflow_name

from .inner_run import LIMIT, REPO, junit_cases
from .mlflow_server import free_port, mlflow_server  # noqa: F401  (fixture)
from .test_baseline_paired import _pair, write_run

# MLflow's first import must not happen inside pytester's chdir: imported there (the session test below,
# when it runs first, as in CI's second-seed pass), it left this process unable to find any installed
# distribution through importlib.metadata, so later in-process pytest runs lost our plugin. Imported at
# collection, from the repository (as the plugin imports it, from the user's working directory), it does not.
mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="mlflow-skinny is not installed (the test extra)")


def _runs(uri: str, experiment: str):
    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id]) if found else [])


def test_report_cli_exports_and_a_second_export_updates_the_same_run(mlflow_server, tmp_path, capsys):  # noqa: F811
    before, _ = _pair()
    junit = write_run(tmp_path / "run", "smoke", before)
    args = [str(junit), "--mlflow", mlflow_server, "--mlflow-experiment", "cli-export"]
    assert report_main(args) == 0
    assert report_main(args) == 0  # again: found by its tag, updated
    client, runs = _runs(mlflow_server, "cli-export")
    assert len(runs) == 1
    run = runs[0]
    values = list(before.values())
    assert run.data.metrics["smoke/addition/exact_match"] == pytest.approx(sum(values) / len(values))
    stderr = float(np.std(values, ddof=1) / np.sqrt(len(values)))  # the per-sample scores' own stderr
    assert run.data.metrics["smoke/addition/exact_match.stderr"] == pytest.approx(stderr, rel=1e-12)
    assert run.data.tags["smoke/addition/status"] == "passed" and RUN_KEY_TAG in run.data.tags
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "junit.xml" in artifacts
    nested = {a.path for a in client.list_artifacts(run.info.run_id, mlflow_name("benchmarks", "smoke::addition"))}
    assert any(p.endswith("per_sample.jsonl") for p in nested)


def test_report_cli_exports_the_baseline_verdict_and_its_evidence(mlflow_server, tmp_path, capsys):  # noqa: F811
    """`--baseline` with `--mlflow`: the gate's verdict (tag) and the drop, its interval, the margin, the raw and
    adjusted p and the McNemar evidence (metrics) are those of the JUnit-side comparison, recomputed here."""
    from scipy.stats import binomtest, norm

    before, after = _pair()
    base, now = write_run(tmp_path / "base", "smoke", before), write_run(tmp_path / "now", "smoke", after)
    assert report_main([str(now), "--baseline", str(base), "--mlflow", mlflow_server,
                        "--mlflow-experiment", "cli-gate"]) == 1  # a 7-point drop on 200 items: NO-GO
    _, runs = _runs(mlflow_server, "cli-gate")
    data = runs[0].data
    worse = sum(before[i] == 1 and after[i] == 0 for i in before)
    better = sum(before[i] == 0 and after[i] == 1 for i in before)
    diffs = np.array([before[i] - after[i] for i in before])
    drop, se = diffs.mean(), diffs.std(ddof=1) / np.sqrt(len(diffs))
    key = "smoke/addition/exact_match.baseline."
    assert data.tags["smoke/addition/exact_match/baseline_verdict"] == "NO-GO"
    assert data.tags["smoke/addition/exact_match/baseline_tier"] == "critical"
    assert data.metrics[key + "drop"] == pytest.approx(drop, rel=1e-12)
    assert data.metrics[key + "drop_ci_low"] == pytest.approx(drop - norm.ppf(0.975) * se, rel=1e-9)
    assert data.metrics[key + "margin"] == 0.015
    assert data.metrics[key + "p_margin"] == pytest.approx(norm.sf((drop - 0.015) / se), rel=1e-6)
    assert data.metrics[key + "p_adjusted"] == pytest.approx(data.metrics[key + "p_margin"])  # a family of one
    assert data.metrics[key + "p_value"] == pytest.approx(
        binomtest(worse, worse + better, 0.5, alternative="greater").pvalue, rel=1e-9)
    assert (data.metrics[key + "worse"], data.metrics[key + "better"]) == (worse, better)


def test_unreachable_server_fails_the_export_in_one_line(tmp_path, capsys):
    junit = write_run(tmp_path / "run", "smoke", _pair()[0])
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert report_main([str(junit), "--mlflow", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"nemo-eval-report: MLflow export to {uri} failed:"), err


def test_a_pytest_session_is_one_mlflow_run_with_every_score(mlflow_server, run_inner, pytester, endpoint):  # noqa: F811
    """Two xdist workers, one run (exported by the controller); re-exporting the JUnit file
    after the fact updates it."""
    shutil.copy(REPO / "suites" / "smoke.yaml", pytester.path / "smoke.yaml")
    result = run_inner("smoke.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}", "-n", "2",
                       f"--nemo-mlflow-uri={mlflow_server}", "--nemo-mlflow-experiment=session", subprocess=True)
    result.assert_outcomes(passed=6)  # the smoke suite's six benchmarks
    assert f"[nemo-eval] exported to MLflow {mlflow_server}: experiment 'session'" in result.stdout.str()
    client, runs = _runs(mlflow_server, "session")
    assert len(runs) == 1
    run = runs[0]
    stderrs = 0
    for name, (_, props) in junit_cases(pytester.path / "junit.xml").items():
        for key, value in props.items():
            if key.startswith("nemo.metric.") and key.endswith(".value"):
                metric = key[len("nemo.metric."):-len(".value")]
                assert run.data.metrics[mlflow_name(f"smoke::{name}", metric)] == float(value)
            if key.startswith("nemo.metric.") and key.endswith(".stderr"):  # the value, not only the key
                metric = key[len("nemo.metric."):-len(".stderr")]
                assert run.data.metrics[mlflow_name(f"smoke::{name}", metric) + ".stderr"] == float(value)
                stderrs += 1
            if key.endswith(".verdict"):
                metric = key[len("nemo.metric."):-len(".verdict")]
                assert run.data.tags[mlflow_name(f"smoke::{name}", metric, "verdict")] == value
    assert stderrs > 0
    assert run.data.params["nemo.endpoint"] == endpoint
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"junit.xml", "junit.results.json", "junit.html"} <= artifacts
    assert report_main([str(pytester.path / "junit.xml"), "--mlflow", mlflow_server,
                        "--mlflow-experiment", "session"]) == 0
    assert len(_runs(mlflow_server, "session")[1]) == 1
