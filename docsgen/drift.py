"""Checks of the hand-written pages against the code, run by the docs build on every page: an option, a
JUnit property, an environment variable or a repository path that a page names and the code no longer has
is a warning, which `mkdocs build --strict` turns into a failed build. (Links to a reference anchor that
no longer exists are caught by mkdocs itself: `validation.anchors` in mkdocs.yml.)"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

OPTION = re.compile(r"--nemo-[a-z][a-z0-9-]*")
PROPERTY = re.compile(r"`(nemo\.[a-z0-9_<>.*]+)`")
ENV = re.compile(r"\bNEMO_EVAL_[A-Z0-9_]+\b")
REPO_PATH = re.compile(r"`((?:pytest_nemo_eval|tests|scripts|fixtures|suites|benchmarks|docs|docsgen)/[\w./-]+)`")
# NeMo's own Python modules share the `nemo.` prefix; they are not our properties.
NEMO_MODULES = re.compile(r"^nemo\.(collections|lightning|core|utils|export|deploy)\b")
# Where an environment variable must be read or set to exist.
SOURCES = ("pytest_nemo_eval", "scripts", "tests", "fixtures", "benchmarks", ".ci", "docsgen")


@lru_cache(maxsize=1)
def known_options() -> frozenset[str]:
    from docsgen import references

    helps = "\n".join(references.cli_help().values())
    return frozenset(references.option_names() | set(OPTION.findall(helps)))


def _pattern(name: str) -> re.Pattern[str]:
    """`nemo.metric.<metric>.value` -> a regex where each `<...>` (and a trailing `.*`) is any name."""
    text = re.escape(name[:-2] if name.endswith(".*") else name).replace(r"\<", "<").replace(r"\>", ">")
    return re.compile("^" + re.sub(r"<[^>]*>", "[^ ]+", text) + (r"\..+" if name.endswith(".*") else "") + "$")


@lru_cache(maxsize=1)
def junit_names() -> tuple[str, ...]:
    from docsgen import references

    return tuple(references.junit_names())


@lru_cache(maxsize=1)
def _source_text(repo: str) -> str:
    root = Path(repo)
    chunks = []
    for folder in SOURCES:
        for path in (root / folder).rglob("*"):
            posix = path.as_posix()
            if path.is_file() and path.suffix in (".py", ".sh", "") and "/data/" not in posix \
                    and "/tests/docs/" not in posix:  # the drift test's own made-up names
                try:
                    chunks.append(path.read_text(encoding="utf-8"))
                except (UnicodeDecodeError, OSError):
                    continue
    return "\n".join(chunks)


def _property_known(name: str) -> bool:
    """A known name, or a page's pattern (`nemo.proxy.<counter>`, `nemo.baseline.<metric>.*`) some known
    name fits, or a concrete name (`nemo.metric.acc.value`) that fits a known pattern."""
    if NEMO_MODULES.match(name):
        return True
    mine = _pattern(name)
    concrete = re.sub(r"<[^>]*>", "x", name)
    return any(mine.match(known) or _pattern(known).match(concrete) for known in junit_names())


def _ignored(repo: Path, path: str) -> bool:
    import subprocess

    return subprocess.run(["git", "check-ignore", "-q", path], cwd=repo, capture_output=True).returncode == 0


def problems(markdown: str, repo: Path) -> list[str]:
    """What `markdown` names that the code does not have, one line each."""
    found = []
    for option in sorted(set(OPTION.findall(markdown)) - known_options()):
        found.append(f"option {option} is not in runner/options.py (nor any command's help); fix the page")
    for name in sorted(set(PROPERTY.findall(markdown))):
        if not _property_known(name):
            found.append(f"JUnit property `{name}` is not written by report/properties.py or the runner; fix the page")
    text = _source_text(str(repo))
    from pytest_nemo_eval.runner import options

    env_options = {options.env_name(n) for n, _, _ in options.SETTINGS} | {options.env_name(n) for n, _ in options.FLAGS}
    for env in sorted(set(ENV.findall(markdown)) - env_options):
        if env not in text:
            found.append(f"environment variable {env} is read nowhere in {', '.join(SOURCES)}; fix the page")
    for path in sorted(set(REPO_PATH.findall(markdown))):
        if "<" in path or "*" in path or path.startswith("docs/assets/screenshots"):
            continue
        file = path.split("::")[0].split(":")[0]
        if not (repo / file).exists() and not _ignored(repo, file):  # an ignored path is an output a run writes
            found.append(f"path `{path}` does not exist in the repository; fix the page")
    return found
