"""Errors a harness run can end in; each message says what went wrong and what to do.

`HarnessError` is the one base the plugin catches; the subclasses let it tell a
bad suite entry (UnknownTask) from an environment problem (RuntimeUnavailable)
from a harness that ran and failed (HarnessFailed, HarnessTimeout, ResultsError).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

LOG_TAIL_LINES = 40


class HarnessError(Exception):
    """Base of every harness-run error."""


class UnknownTask(HarnessError):
    """The harness or task name is not known; the message lists close matches."""


class RuntimeUnavailable(HarnessError):
    """The runtime cannot start the harness (Docker daemon down, image not pullable, command missing)."""


class HarnessFailed(HarnessError):
    """The harness process or container exited non-zero."""


class HarnessTimeout(HarnessError):
    """The harness ran past its time limit and was killed."""


class ResultsError(HarnessError):
    """results.yml is missing or malformed."""


def log_tail(log_path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """Last `lines` lines of a harness log, for error messages (empty when there is no log)."""
    if log_path is None or not Path(log_path).is_file():
        return ""
    text = Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def with_log_tail(message: str, log_path: Path | None) -> str:
    """The one-line diagnosis read from the harness log (diagnosis.py; first, so JUnit's `nemo.error`
    shows it), the message, then the log's tail, so the cause is visible in the test report."""
    from .diagnosis import diagnose

    tail = log_tail(log_path)
    if not tail:
        return message
    text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    diagnosis = diagnose(text)
    head = f"{diagnosis}\n{message}" if diagnosis else message
    return f"{head}\n--- last {LOG_TAIL_LINES} lines of {log_path} ---\n{tail}"


def close_matches_hint(name: str, known: Iterable[str]) -> str:
    """' Did you mean: a, b?' for a misspelt name, or '' when nothing is close."""
    import difflib

    known = list(known)
    matches = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    if not matches:
        # also try by the part after the harness prefix, e.g. 'builtin.demo_adition'
        short = {k.split(".", 1)[-1]: k for k in known}
        matches = [short[m] for m in difflib.get_close_matches(name.split(".", 1)[-1], short, n=5, cutoff=0.5)]
    return f" Did you mean: {', '.join(matches)}?" if matches else ""
