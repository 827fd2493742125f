"""What the run leaves behind in the terminal and in the JUnit suite properties.

Reads only test reports (`user_properties`), which xdist ships from workers to
the controller, so the table and provenance are the same serial or parallel.
"""

from __future__ import annotations

import pytest

from pytest_nemo_eval.report.properties import record_from_properties
from pytest_nemo_eval.report.table import render, rows


def _status(report: pytest.TestReport) -> str:
    if report.skipped:
        return "skipped"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    return "passed"


def remember(state, report: pytest.TestReport) -> None:
    """Keep a benchmark's record from its final report (call, or a failed/skipped setup)."""
    record = record_from_properties(report.user_properties)
    if record is None:
        return
    state.records.append((record, _status(report)))
    suite = record.benchmark.split("::", 1)[0]
    if record.info.get("suite_sha256"):
        state.suite_hashes[suite] = record.info["suite_sha256"]
    if record.info.get("seed"):
        state.seeds[suite] = record.info["seed"]


def suite_properties(state) -> list[tuple[str, str]]:
    """Provenance of the run: model, versions, suite hashes, seeds, number of deployments."""
    props = dict(state.target.provenance) if state.target is not None else {}
    props["nemo.deployments"] = str(state.local.deployments_started if state.local else 0)
    for suite, digest in sorted(state.suite_hashes.items()):
        props[f"nemo.suite.{suite}.sha256"] = digest
    for suite, seed in sorted(state.seeds.items()):
        props[f"nemo.suite.{suite}.seed"] = seed
    if len(set(state.seeds.values())) == 1:
        props["nemo.seed"] = next(iter(state.seeds.values()))
    return sorted(props.items())


def add_suite_properties(state) -> None:
    from _pytest.junitxml import xml_key

    xml = state.config.stash.get(xml_key, None)
    if xml is None:
        return
    for name, value in suite_properties(state):
        xml.add_global_property(name, value)


def write_summary(terminalreporter, state) -> None:
    if not state.records:
        return
    terminalreporter.write_sep("=", "nemo-eval scores")
    terminalreporter.write_line(render(rows(state.records)))
    target = state.target
    if target is not None:
        source = target.provenance.get("nemo.checkpoint") or target.provenance.get("nemo.endpoint", "")
        line = f"model {target.model_id} ({source}); proxy {target.proxy_url}"
        if state.local is not None and state.local.deployments_started:
            line += f"; deployed {state.local.deployments_started}x in {state.local.deploy_seconds:.1f}s"
        terminalreporter.write_line(line)
