"""docs/ci-skips.md names every test that needs a heavy eval-factory venv (built only by
scripts/test_heavy_harnesses.sh, never by .ci/run), so a claim proven only by a test CI skips on a fresh
machine is listed in one place; and the README does not say CI runs them. Read from the test sources (ast):
a test needs a heavy venv when it asks, directly or through other fixtures, for one whose body calls
`prebuilt_venv_bin`."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "ci-skips.md"


def _functions() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted((REPO / "tests" / "harness").glob("*.py")):  # where prebuilt_venv_bin lives
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [(path.relative_to(REPO).as_posix(), node) for node in tree.body if isinstance(node, ast.FunctionDef)]
    return found


def _calls(node: ast.FunctionDef, name: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in ast.walk(node))


def heavy_tests() -> set[str]:
    functions = _functions()
    heavy = {node.name for _, node in functions if node.name != "prebuilt_venv_bin" and _calls(node, "prebuilt_venv_bin")}
    while True:  # fixtures that ask for a heavy fixture are heavy too
        more = {node.name for _, node in functions if not node.name.startswith("test_")
                and heavy & {a.arg for a in node.args.args}} - heavy
        if not more:
            break
        heavy |= more
    return {f"{path}::{node.name}" for path, node in functions
            if node.name.startswith("test_") and heavy & {a.arg for a in node.args.args}}


def test_every_test_that_needs_a_heavy_venv_is_listed_in_docs_ci_skips():
    doc = DOC.read_text(encoding="utf-8")
    tests = heavy_tests()
    assert len(tests) >= 10, tests  # the five packages, with and without the demo
    unlisted = sorted(t for t in tests if t not in doc and f"`{t.split('::')[0]}`" not in doc)
    assert unlisted == [], f"add these to {DOC.relative_to(REPO)}: {unlisted}"


def test_the_readme_does_not_say_ci_runs_them():
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert "CI's machine included" not in readme
    assert "docs/ci-skips.md" in readme
