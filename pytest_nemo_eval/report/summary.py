"""What the run leaves behind: the session's `RunResult` (collected from the benchmarks'
results, which xdist workers send as JSON on their test reports), its JUnit suite properties,
and the terminal table. The same serial or parallel."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import TypeAdapter

from pytest_nemo_eval.report.table import render, rows
from pytest_nemo_eval.results import BenchmarkResult, RunResult

if TYPE_CHECKING:
    from pytest_nemo_eval.runner.resources import Target

REPORT_ATTRIBUTE = "nemo_results"  # TestReport attribute: the test's BenchmarkResults as one JSON document
_RESULTS = TypeAdapter(list[BenchmarkResult])


def attach(report: pytest.TestReport, results: list[BenchmarkResult]) -> None:
    """A suite item's final report carries its one result; a Python test's call report those of the
    `nemo_benchmark` calls it made. A string attribute, so pytest serializes it for xdist."""
    setattr(report, REPORT_ATTRIBUTE, _RESULTS.dump_json(results).decode())


def results_of(report: pytest.TestReport) -> list[BenchmarkResult]:
    """The results a report carries (serial, or deserialized from a worker); [] for any other report."""
    document = getattr(report, REPORT_ATTRIBUTE, None)
    return _RESULTS.validate_json(document) if isinstance(document, str) else []


def keep_samples(results: list[BenchmarkResult], junit: Path | None) -> list[BenchmarkResult]:
    """Copy each per-sample file beside the JUnit file (`gate.samples/`, samples.py), so the JUnit
    file, its JSON twin and its samples travel together as one CI artifact and one later baseline,
    and a later run reusing the output dir cannot overwrite them. Results name the copies."""
    if junit is None:
        return results
    from pytest_nemo_eval.samples import samples_dir_beside

    folder = samples_dir_beside(junit)
    kept = []
    for result in results:
        source = Path(result.samples_file) if result.samples_file else None
        if source is not None and source.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            copy = Path(shutil.copy2(source, folder / source.name)).resolve()
            result = result.model_copy(update={"samples_file": str(copy)})
        kept.append(result)
    return kept


def provenance(
    target: Target | None, deployments: int, results: list[BenchmarkResult], started: str | None = None
) -> dict[str, str]:
    """Provenance of the run: model, versions, suite hashes, seeds, number of deployments, and the
    session's start time (UTC ISO), which tells sessions apart (exporters find their run by it)."""
    props = dict(target.provenance) if target is not None else {}
    props["nemo.deployments"] = str(deployments)
    if started:
        props["nemo.started"] = started
    hashes = {r.suite: r.suite_sha256 for r in results if r.suite_sha256}
    seeds = {r.suite: str(r.seed) for r in results if r.seed is not None}
    for suite, digest in sorted(hashes.items()):
        props[f"nemo.suite.{suite}.sha256"] = digest
    for suite, seed in sorted(seeds.items()):
        props[f"nemo.suite.{suite}.seed"] = seed
    if len(set(seeds.values())) == 1:
        props["nemo.seed"] = next(iter(seeds.values()))
    return dict(sorted(props.items()))


def add_suite_properties(config: pytest.Config, run: RunResult) -> None:
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    for name, value in run.provenance.items():
        xml.add_global_property(name, value)


def write_summary(terminalreporter: Any, run: RunResult, target: Target | None, deploy_seconds: float) -> None:
    if not run.benchmarks:
        return
    terminalreporter.write_sep("=", "nemo-eval scores")
    terminalreporter.write_line(render(rows(run.benchmarks)))
    if target is not None:
        source = target.provenance.get("nemo.checkpoint") or target.provenance.get("nemo.endpoint", "")
        line = f"model {target.model_id} ({source}); proxy {target.proxy_url}"
        deployments = int(run.provenance.get("nemo.deployments", "0"))
        if deployments:
            line += f"; deployed {deployments}x in {deploy_seconds:.1f}s"
        terminalreporter.write_line(line)
