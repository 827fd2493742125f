"""mkdocs hooks (mkdocs.yml `hooks:`): add the reference pages generated from the code, fill the
troubleshooting page's list of `Diagnosis:` messages, check every hand-written page against the code
(docsgen/drift.py: a warning, so `--strict` fails), and make the screenshots from a real demo run.

NEMO_EVAL_DOCS_SCREENSHOTS: `fresh` (scripts/docs.sh, CI) runs the demo and takes them anew; unset, a
build takes them only when docs/assets/screenshots/ lacks one; `skip` runs nothing and puts a 1-pixel
placeholder in the site for each one missing (the quick build tests/test_docs.py makes)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from docsgen import diagnoses, drift, references, screenshots  # noqa: E402

log = logging.getLogger("mkdocs.plugins.docsgen")
GENERATED: dict[str, Callable[[], str]] = {
    "reference/suite-schema.md": references.suite_page,
    "reference/options.md": references.options_page,
    "reference/interceptors.md": references.interceptors_page,
    "reference/harnesses.md": references.harnesses_page,
    "reference/junit-properties.md": references.junit_page,
    "reference/cli.md": references.cli_page,
}
MARKERS: dict[str, Callable[[], str]] = {
    "<!-- generated: diagnoses -->": lambda: diagnoses.page_section(REPO / "pytest_nemo_eval", REPO),
    "<!-- generated: result fields -->": references.result_fields_section,
}
SHOTS_DIR = REPO / "docs" / "assets" / "screenshots"
# Pages other work adds: placed in the nav when the file exists (nav section, title, page, first or last).
OPTIONAL_PAGES = (
    ("Tutorials", "A release gate in GitHub Actions and GitLab CI", "tutorials/ci-release-gate.md", True),
    ("How-to guides", "Persistent cache and resume", "how-to/cache-and-resume.md", False),
    ("Concepts", "Baseline gate policy", "concepts/gate-policy.md", False),
)
# a valid 1x1 transparent PNG
PLACEHOLDER_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def on_config(config: Any) -> Any:
    docs_dir = Path(config["docs_dir"])
    placed = repr(config["nav"])
    for section, title, page, first in OPTIONAL_PAGES:
        if not (docs_dir / page).is_file() or f"'{page}'" in placed:  # missing, or mkdocs.yml places it already
            continue
        for entry in config["nav"] or []:
            if isinstance(entry, dict) and section in entry:
                entry[section].insert(0 if first else len(entry[section]), {title: page})
    return config


def on_pre_build(config: Any) -> None:
    mode = os.environ.get("NEMO_EVAL_DOCS_SCREENSHOTS", "")
    if mode == "skip":
        log.info("screenshots: skipped (NEMO_EVAL_DOCS_SCREENSHOTS=skip)")
        return
    if mode != "fresh" and all((SHOTS_DIR / name).is_file() for name in screenshots.SHOTS):
        log.info("screenshots: kept from the last build (NEMO_EVAL_DOCS_SCREENSHOTS=fresh takes them anew)")
        return
    took = screenshots.make(REPO, SHOTS_DIR)
    log.info("screenshots: " + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in took.items()))


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for src_uri, make in GENERATED.items():
        files.append(File.generated(config, src_uri, content=make()))
    if os.environ.get("NEMO_EVAL_DOCS_SCREENSHOTS") == "skip":
        for name in screenshots.SHOTS:
            if not (SHOTS_DIR / name).is_file():
                files.append(File.generated(config, f"assets/screenshots/{name}", content=PLACEHOLDER_PNG))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    if page.file.src_uri not in GENERATED:
        for problem in drift.problems(markdown, REPO):
            log.warning(f"{page.file.src_uri}: {problem}")
    return markdown
