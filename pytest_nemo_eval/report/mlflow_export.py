"""Exporter: one MLflow run per pytest session (as NeMo Evaluator's launcher exports).

Params: the provenance and each benchmark's settings; metrics `<suite>/<benchmark>/<metric>`
with `.stderr`, `.ci_low`, `.ci_high`, and versus a baseline `.baseline.drop`, `.baseline.drop_ci_low`,
`.baseline.drop_ci_high`, `.baseline.margin`, `.baseline.p_margin`, `.baseline.p_adjusted` and the evidence
`.baseline.p_value` (McNemar / permutation), `.baseline.mde`, `.baseline.worse`, `.baseline.better`; tags:
every verdict (`<metric>/baseline_verdict`: GO | NO-GO | INCONCLUSIVE, and its tier), status and outcome; artifacts: the
JUnit file, its JSON results file and HTML report, the harnesses' results.yml and per-sample
files. Exporting the same session again (live, then `nemo-eval-report gate.xml --mlflow URI`)
finds its run by the `nemo.run_key` tag and updates it, never making a second one.
An unreachable server costs one clear line; the gate's results never depend on it.
Uses the MLflow client only (`mlflow-skinny`).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_nemo_eval.results import RunResult

DEFAULT_EXPERIMENT = "pytest-nemo-eval"
RUN_KEY_TAG = "nemo.run_key"
_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")


class MlflowExportError(RuntimeError):
    """The export failed (server unreachable, bad URI); the message is one line."""


def mlflow_name(*parts: str) -> str:
    """A metric/param/tag key MLflow accepts (alphanumerics, `_-. /`): `smoke::add` -> `smoke/add`."""
    return _BAD.sub("_", "/".join(p.replace("::", "/") for p in parts))


def run_key(run: RunResult) -> str:
    """Stable identity of a session: its provenance (with its start time) and its benchmark ids,
    the same whether computed live or from its JUnit file."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(run.provenance.items()) if k.startswith("nemo."))
    text += "\n" + "\n".join(sorted(r.benchmark for r in run.benchmarks))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def params_of(run: RunResult) -> dict[str, str]:
    params = {mlflow_name(k): v for k, v in run.provenance.items()}
    for r in run.benchmarks:
        for field in ("harness", "runtime", "image", "seed", "samples", "code_isolation"):
            value = getattr(r, field)
            if value is not None:
                params[mlflow_name(r.benchmark, field)] = str(value)
    return {k: v[:6000] for k, v in params.items()}


def metrics_of(run: RunResult) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for r in run.benchmarks:
        for name, m in r.metrics.items():
            key = mlflow_name(r.benchmark, name)
            metrics[key] = m.value
            for suffix, value in (("stderr", m.stderr), ("ci_low", m.ci_low), ("ci_high", m.ci_high)):
                if value is not None:
                    metrics[f"{key}.{suffix}"] = value
        for c in r.baseline:
            key = mlflow_name(r.benchmark, c.metric) + ".baseline."
            if c.decision is not None:
                d = c.decision
                for suffix, value in (("drop", d.drop), ("drop_ci_low", d.ci_low), ("drop_ci_high", d.ci_high),
                                      ("margin", d.margin), ("p_margin", d.p_value), ("p_adjusted", d.p_adjusted)):
                    if value is not None:
                        metrics[key + suffix] = value
            if c.paired is not None:
                metrics.update({key + "p_value": c.paired.p_value, key + "mde": c.paired.mde,
                                key + "worse": float(len(c.paired.worse)), key + "better": float(len(c.paired.better))})
        if r.duration_s is not None:
            metrics[mlflow_name(r.benchmark, "duration_s")] = r.duration_s
    return metrics


def tags_of(run: RunResult) -> dict[str, str]:
    tags = {RUN_KEY_TAG: run_key(run), "nemo.model_id": run.provenance.get("nemo.model_id", "")}
    for r in run.benchmarks:
        tags[mlflow_name(r.benchmark, "status")] = r.status
        if r.outcome:
            tags[mlflow_name(r.benchmark, "outcome")] = r.outcome
        for name, m in r.metrics.items():
            if m.verdict:
                tags[mlflow_name(r.benchmark, name, "verdict")] = m.verdict
        for c in r.baseline:
            if c.decision is not None:
                tags[mlflow_name(r.benchmark, c.metric, "baseline_verdict")] = c.decision.verdict
                tags[mlflow_name(r.benchmark, c.metric, "baseline_tier")] = c.decision.tier
    return tags


def artifacts_of(run: RunResult, extra: list[Path]) -> list[tuple[Path, str]]:
    """(file, artifact folder): the given report files at the root, per benchmark its files."""
    out = [(p, "") for p in extra if p.is_file()]
    for r in run.benchmarks:
        for path in (r.results_file, r.samples_file):
            if path and Path(path).is_file():
                out.append((Path(path), mlflow_name("benchmarks", r.benchmark)))
    return out


def export_run(run: RunResult, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT,
               artifacts: list[Path] | None = None) -> str:
    """Create or update the session's MLflow run; its run id. `MlflowExportError` on failure."""
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MlflowExportError(
            "MLflow export needs the MLflow client: pip install 'pytest-nemo-eval[mlflow]' (mlflow-skinny)"
        ) from None

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # an unreachable server: fail in seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        key = run_key(run)
        existing = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'", max_results=1)
        run_id: str
        logged: dict[str, str] = {}
        if existing:
            run_id = existing[0].info.run_id
            logged = existing[0].data.params
        else:
            name = f"{run.provenance.get('nemo.model_id', 'model')} {run.provenance.get('nemo.started', '')}".strip()
            run_id = client.create_run(experiment_id, tags={"mlflow.runName": name}).info.run_id
        params = [Param(k, v) for k, v in params_of(run).items() if k not in logged]
        metrics = [Metric(k, v, 0, 0) for k, v in metrics_of(run).items()]
        tags = [RunTag(k, v) for k, v in tags_of(run).items()]
        for start in range(0, max(len(params), len(metrics), len(tags)), 100):  # MLflow's batch limits
            client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100],
                             tags=tags[start:start + 100])
        for path, folder in artifacts_of(run, artifacts or []):
            client.log_artifact(run_id, str(path), folder or None)
        client.set_terminated(run_id, "FINISHED" if all(r.status != "error" for r in run.benchmarks) else "FAILED")
    except Exception as exc:  # the client raises MlflowException, requests' and OS errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise MlflowExportError(f"MLflow export to {tracking_uri} failed: {type(exc).__name__}: {first[:300]}") from None
    return run_id


def tracking_uri_from(option: str | None) -> str | None:
    return option or os.environ.get("MLFLOW_TRACKING_URI") or None


class MlflowExporter:
    """Exports after pytest wrote the JUnit file (sessionfinish, trylast), so it is an artifact."""

    def __init__(self, tracking_uri: str, experiment: str, output_dir: Path) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.output_dir = output_dir
        self.run: RunResult | None = None
        self.run_id: str | None = None

    def pytest_nemo_run_result(self, run: RunResult, config: pytest.Config) -> None:
        self.run = run

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.run is None:
            return
        from pytest_nemo_eval.report.json_file import junit_path, results_path

        junit = junit_path(session.config)
        files = [junit, results_path(session.config, self.output_dir),
                 junit.with_suffix(".html") if junit else self.output_dir / "report.html"]
        try:
            self.run_id = export_run(self.run, self.tracking_uri, self.experiment, [f for f in files if f])
            line = f"[nemo-eval] exported to MLflow {self.tracking_uri}: experiment {self.experiment!r}, run {self.run_id}"
        except MlflowExportError as exc:
            line = f"[nemo-eval] {exc} (the gate's results are in the JUnit and JSON files)"
        _say(session.config, line)


def _say(config: pytest.Config, line: str) -> None:
    reporter: Any = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line, flush=True)
