"""The docs site (docs/, mkdocs.yml, docsgen/): the strict build passes with the references generated from
the code, a drift between a page and the code fails it, and the README stays a short page whose example
and commands are true. The build here skips the demo run (NEMO_EVAL_DOCS_SCREENSHOTS=skip: placeholder
images); CI's scripts/docs.sh takes the real screenshots. A few seconds."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from docsgen import diagnoses, drift, references
from pytest_nemo_eval.adapters.builtins import chain_order
from pytest_nemo_eval.adapters.registry import CUSTOM_SLOT
from pytest_nemo_eval.harness import eval_factory
from pytest_nemo_eval.report import properties
from pytest_nemo_eval.runner import options
from pytest_nemo_eval.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _mkdocs_build(site: Path, docs_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (scripts/docs.sh installs it)")
    pytest.importorskip("material", reason="the docs extra is not installed (scripts/docs.sh installs it)")
    config = REPO / "mkdocs.yml"
    if docs_dir is not None:  # a copy of the config pointing at a changed copy of the pages
        text = config.read_text(encoding="utf-8").replace("docs_dir: docs", f"docs_dir: {docs_dir}")
        text = text.replace("  - docsgen/hooks.py", f"  - {REPO / 'docsgen' / 'hooks.py'}")
        config = site.parent / "mkdocs.yml"
        config.write_text(text, encoding="utf-8")
    env = {**os.environ, "NEMO_EVAL_DOCS_SCREENSHOTS": "skip", "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_strict_build_passes_and_writes_every_generated_reference(tmp_path):
    built = _mkdocs_build(tmp_path / "site")
    assert built.returncode == 0, built.stderr[-4000:]
    site = tmp_path / "site"
    for page in references_pages():
        assert (site / page.replace(".md", ".html")).is_file(), page
    options_html = (site / "reference" / "options.html").read_text(encoding="utf-8")
    for name, _, _ in options.SETTINGS:
        assert f'id="nemo-{name}"' in options_html and options.env_name(name) in options_html
    api = (site / "reference" / "api.html").read_text(encoding="utf-8")
    assert "pytest_nemo_run_result" in api and "BenchmarkResult" in api and "nemo_benchmark" in api
    troubleshooting = (site / "troubleshooting.html").read_text(encoding="utf-8")
    assert "judge unreachable" in troubleshooting and "generated: diagnoses" not in troubleshooting


def references_pages() -> list[str]:
    from docsgen.hooks import GENERATED

    return list(GENERATED)


def test_a_page_naming_a_removed_option_or_property_fails_the_build(tmp_path):
    """The drift the strict build exists for: a hand-written page that names an option and a JUnit property
    the code does not have, and links an option anchor the generated reference no longer has."""
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs, ignore=shutil.ignore_patterns("screenshots"))
    page = docs / "getting-started.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nUse `--nemo-warp-speed` and read `nemo.proxy.warp_factor`; "
                    "see [the option](reference/options.md#nemo-warp-speed).\n", encoding="utf-8")
    built = _mkdocs_build(tmp_path / "site", docs)
    assert built.returncode != 0
    assert "option --nemo-warp-speed is not in runner/options.py" in built.stderr, built.stderr[-3000:]
    assert "JUnit property `nemo.proxy.warp_factor` is not written" in built.stderr
    assert "nemo-warp-speed" in built.stderr and "anchor" in built.stderr.lower()


def test_generated_references_hold_every_entry_of_the_code():
    harnesses = references.harnesses_page()
    for h in eval_factory.KNOWN_HARNESSES.values():
        row = next(line for line in harnesses.splitlines() if f"`{h.image}`" in line)
        assert f"`{h.framework}`" in row and f"`{h.package}`" in row
    interceptors = references.interceptors_page()
    assert " > ".join("custom" if n == CUSTOM_SLOT else n for n in chain_order()) + " > upstream" in interceptors
    junit = references.junit_names()
    for field in properties.FACT_FIELDS:
        assert f"nemo.{field}" in junit
    assert {f"nemo.proxy.{k}" for k in properties.PROXY_FIELDS} <= set(junit)
    assert "nemo.suite.<suite>.sha256" in junit and "nemo.checkpoint_sha256" in junit
    schema = references.suite_page()
    for key in ("max_request_errors", "thresholds", "judge", "chat_template_kwargs"):
        assert f"`{key}`" in schema
    helps = references.cli_help()
    assert {"nemo-eval", "nemo-eval deploy", "nemo-eval proxy", "nemo-eval-harness", "nemo-eval-report"} <= set(helps)
    assert "--baseline" in helps["nemo-eval-report"] and "run_eval" in helps["nemo-eval-harness"]


def test_drift_checks_accept_true_names_and_name_false_ones():
    good = ("`--nemo-baseline`, `nemo.metric.<metric>.value`, `nemo.metric.acc.verdict`, `nemo.baseline.<metric>.*`, "
            "`NEMO_EVAL_DEMO_SEED`, `pytest_nemo_eval/suite.py`, `nemo.collections.llm.import_ckpt`")
    assert drift.problems(good, REPO) == []
    bad = "`--nemo-nope`, `nemo.metric.<metric>.vibes`, NEMO_EVAL_NOPE_NOPE, `pytest_nemo_eval/nope.py`"
    found = " ".join(drift.problems(bad, REPO))
    for name in ("--nemo-nope", "nemo.metric.<metric>.vibes", "NEMO_EVAL_NOPE_NOPE", "pytest_nemo_eval/nope.py"):
        assert name in found


def test_every_diagnosis_in_the_source_is_listed():
    """Oracle: Python's tokenizer (not docsgen's ast walk) counts the string tokens that open with `Diagnosis: `."""
    import tokenize

    count = 0
    for path in (REPO / "pytest_nemo_eval").rglob("*.py"):
        with path.open("rb") as source:
            for token in tokenize.tokenize(source.readline):
                body = token.string.lstrip("rRbBfFuU").lstrip("'\"")
                message = body.rstrip("'\"")
                count += token.type == tokenize.STRING and message.startswith("Diagnosis: ") and message != "Diagnosis: "
    found = diagnoses.messages(REPO / "pytest_nemo_eval", REPO)
    assert len(found) == count >= 5
    listed = diagnoses.page_section(REPO / "pytest_nemo_eval", REPO)
    specific = [m for m in found if "{cause}" not in m.text and "the harness crashed" not in m.text]
    assert specific and all(m.text in listed and m.where in listed for m in specific)
    assert all(cause in listed for cause, _, _ in __import__("pytest_nemo_eval.harness.diagnosis",
                                                              fromlist=["CAUSES"]).CAUSES)


def test_readme_is_short_and_its_example_and_commands_are_true(tmp_path):
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    for command in ("bash scripts/demo.sh", "bash scripts/test.sh"):
        assert f"\n    {command}\n" in text and (REPO / command.split()[1]).is_file()
    example = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert example is not None
    (tmp_path / "example.yaml").write_text(example.group(1), encoding="utf-8")
    mine = {b.name: b for b in load_suite(tmp_path / "example.yaml").suite.benchmarks}
    smoke = {b.name: b for b in load_suite(REPO / "suites" / "smoke.yaml").suite.benchmarks}
    for name, benchmark in mine.items():  # the README says it is part of smoke.yaml
        assert (benchmark.harness, benchmark.task, benchmark.thresholds) == (
            smoke[name].harness, smoke[name].task, smoke[name].thresholds)
    assert drift.problems(text, REPO) == []
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (REPO / link).is_file(), link
    assert yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8").replace("!!", ""))["strict"] is True


def test_an_option_removed_from_the_code_fails_the_build_of_pages_naming_it(tmp_path, monkeypatch):
    """The other direction: the pages stay, the code drops `--nemo-baseline-tolerance` from its options
    table; the build (in this process, so the patched table is the one it reads) must refuse the pages."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (scripts/docs.sh installs it)")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort

    monkeypatch.setattr(options, "SETTINGS", [s for s in options.SETTINGS if s[0] != "baseline-tolerance"])
    monkeypatch.setenv("NEMO_EVAL_DOCS_SCREENSHOTS", "skip")
    drift.known_options.cache_clear()
    try:
        with pytest.raises(Abort, match="warnings in strict mode"):
            build(load_config(str(REPO / "mkdocs.yml"), site_dir=str(tmp_path / "site"), strict=True))
        assert "--nemo-baseline-tolerance" not in drift.known_options()
    finally:
        drift.known_options.cache_clear()
