"""mkdocs hooks (mkdocs.yml `hooks:`): add the reference pages generated from the code, fill the
troubleshooting page's list of `Diagnosis:` messages, check every hand-written page against the code
(docsgen/drift.py: a warning, so `--strict` fails), and make the screenshots from a real demo run.

NEMO_EVAL_DOCS_SCREENSHOTS: `fresh` (scripts/docs.sh, CI) runs the demo and takes them anew; unset, a
build takes them only when docs/assets/screenshots/ lacks one; `skip` writes none (pages then link
missing images, which --strict reports)."""

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
}
SHOTS_DIR = REPO / "docs" / "assets" / "screenshots"


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
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    if page.file.src_uri not in GENERATED:
        for problem in drift.problems(markdown, REPO):
            log.warning(f"{page.file.src_uri}: {problem}")
    return markdown
