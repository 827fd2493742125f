"""A judged benchmark's judge, as an eval-factory harness is told about it.

Every judged framework reads `config.params.extra.judge.*` (their framework.yml files): `url` (a chat
completions URL), `model_id`, and the NAME of the variable holding the judge's key, which mtbench calls
`api_key_name` and the others `api_key` (eval_factory.KNOWN_HARNESSES[...].judge_key_param). The plugin
fills these in with the judge's proxy route, so no suite hard-codes a judge URL.
"""

from __future__ import annotations

import socket
import urllib.parse
from typing import Any

from . import eval_factory
from .errors import RuntimeUnavailable

JUDGE_PARAM_PREFIX = "config.params.extra.judge."
JUDGE_URL_PARAM = f"{JUDGE_PARAM_PREFIX}url"  # the endpoint a sandboxed harness gets relayed (local_runtime.py)
CONNECT_TIMEOUT_S = 5.0


def judge_overrides(harness: str, *, url: str, model_id: str, api_key_env: str | None) -> dict[str, Any]:
    """The `config.params.extra.judge.*` overrides for `harness`."""
    known = eval_factory.known_harness(harness)
    key_param = known.judge_key_param if known else "api_key"
    overrides: dict[str, Any] = {JUDGE_URL_PARAM: url, f"{JUDGE_PARAM_PREFIX}model_id": model_id}
    if api_key_env:
        overrides[f"{JUDGE_PARAM_PREFIX}{key_param}"] = api_key_env
    return overrides


def chat_url(base: str) -> str:
    """A judge's chat completions URL from its base (`http://h:p`, `.../v1`) or the full URL itself."""
    base = base.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


def upstream_base(url: str) -> str:
    """The judge server's base URL (what a proxy forwards to): scheme://host:port."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def require_reachable(url: str, *, benchmark: str, model_id: str) -> None:
    """Raise `RuntimeUnavailable` naming the judge when nothing accepts a connection at its host:port."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return
    except OSError as exc:
        raise RuntimeUnavailable(
            f"Diagnosis: judge unreachable: benchmark {benchmark}'s judge {model_id!r} at {url} does not accept "
            f"connections ({exc}). Start the judge, or fix the suite's `judge` (url, model_id, api_key_env); "
            "the harness was not started."
        ) from None
