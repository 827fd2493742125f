"""One line saying why a harness failed, read from its log, put above the log tail in the error.

Harness logs are long and each framework words its failures differently; most failures seen running the
eval-factory packages offline fall in a few causes, each with one fix. Checked in this order (the first
that matches wins), so that a judge that cannot be reached is not reported as a generic crash:
judge unreachable, a local endpoint refusing connections (the model's proxy or a relay: nothing listens
there, which offline reads like a blocked download but is not), dataset/hub download blocked, prompt longer than the context, missing credentials,
and finally any Python exception that ended the run ("the harness crashed: <its last line>").
"""

from __future__ import annotations

import re

_CONNECT = r"(connection refused|connecterror|connectionerror|max retries exceeded|failed to establish|" \
           r"name or service not known|temporary failure in name resolution)"
CAUSES: tuple[tuple[str, re.Pattern, str], ...] = (
    ("judge unreachable", re.compile(rf"judge.*{_CONNECT}|{_CONNECT}.*judge", re.I),
     "the judge endpoint could not be reached; check the suite's `judge` (URL, model, key) and that it is up"),
    ("endpoint refused the connection", re.compile(
        r"(127\.0\.0\.1|localhost|\[::1\]).*(connection refused|errno 111)|(connection refused|errno 111).*"
        r"(127\.0\.0\.1|localhost|\[::1\])|urlopen error \[errno 111\]", re.I),
     "nothing listened at the model's (or judge's) local URL: the deployment or proxy stopped, or the harness "
     "was given a wrong port; the log above the tail says which URL"),
    ("download blocked", re.compile(
        r"OfflineModeIsEnabled|offline mode is enabled|couldn't reach .* on the hub|LocalEntryNotFoundError|"
        r"we couldn't connect to 'https://huggingface\.co|huggingface\.co.*" + _CONNECT + r"|"
        r"Resource \S+ not found|temporary failure in name resolution|name or service not known|urlopen error",
        re.I),
     "the harness tried to download a dataset, model file or other data and the network (or offline mode) "
     "blocked it; prepare the data locally (an HF datasets cache, `mounts`, the harness's data-path option) "
     "or allow the download"),
    ("prompt too long", re.compile(
        r"context_length_exceeded|maximum context length|more than this model's context|exceeds this model's "
        r"context|prompt is too long|too many tokens", re.I),
     "prompts (plus max_new_tokens) are longer than the model's context; lower config.params.max_new_tokens, "
     "pick a task with shorter prompts, or serve a longer context"),
    ("missing credentials", re.compile(
        r"\b401\b|unauthorized|AuthenticationError|invalid api key|incorrect api key|api[_ ]key.*(not set|missing|"
        r"required)|(not set|missing).*api[_ ]key", re.I),
     "the endpoint or the harness wants credentials it did not get; set the API-key variable the suite names "
     "(api_key_env / target.api_endpoint.api_key_name) or the one the harness needs"),
)
_EXCEPTION_LINE = re.compile(r"^\s*(?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt|Exit)\b:?.*$")


def diagnose(log_text: str) -> str | None:
    """`Diagnosis: <cause>: <fix> (log: "<the line>")`, or None when nothing recognisable is in the log."""
    lines = [line.rstrip() for line in log_text.splitlines() if line.strip()]
    for cause, pattern, fix in CAUSES:
        hit = next((line for line in reversed(lines) if pattern.search(line)), None)
        if hit is not None:
            return f"Diagnosis: {cause}: {fix} (log: {_around(_strip_prefix(hit), pattern)!r})"
    if any("Traceback (most recent call last)" in line for line in lines):
        last = next((line for line in reversed(lines) if _EXCEPTION_LINE.match(_strip_prefix(line))), None)
        if last is not None:
            return f"Diagnosis: the harness crashed: {_short(_strip_prefix(last))}"
    return None


def _strip_prefix(line: str) -> str:
    """Drop the plugin's `[benchmark] ` log prefix."""
    return re.sub(r"^\[[^\]]*\] ", "", line)


def _around(line: str, pattern: re.Pattern, before: int = 60, after: int = 140) -> str:
    """The part of a long log line around what matched."""
    start = pattern.search(line).start()
    excerpt = line[max(0, start - before): start + after].strip()
    return ("..." if start > before else "") + excerpt + ("..." if len(line) > start + after else "")


def _short(line: str, limit: int = 200) -> str:
    line = _strip_prefix(line).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."
