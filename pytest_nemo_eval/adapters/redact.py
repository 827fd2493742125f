"""Keep secrets out of logs: credential headers, key-like body fields, known key values."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie"})
_SECRET_FIELD = re.compile(r"(api[_-]?key|secret|password|token$|^authorization$)", re.IGNORECASE)
# A field named like "max_tokens" or "prompt_tokens" is not a secret.
_NOT_SECRET_FIELD = re.compile(r"tokens?$|_token_|token_ids?$|^stop_token|^end_token|^start_token", re.IGNORECASE)


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


# Request fields whose values are JSON schemas: a tool's `api_key` or `password` property is a schema the
# model sees, not a secret, and the log must show it as sent. Known secret values are still masked there.
SCHEMA_FIELDS = frozenset({"tools", "functions", "response_format", "guided_json"})


def redact_value(value: Any, secrets: tuple[str, ...] = (), *, by_name: bool = True) -> Any:
    """Copy of a JSON value with key-like fields and any known secret string masked
    (fields are not masked by name inside `SCHEMA_FIELDS`)."""
    if isinstance(value, dict):
        return {k: (REDACTED if by_name and _is_secret_field(k)
                    else redact_value(v, secrets, by_name=by_name and k not in SCHEMA_FIELDS))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, secrets, by_name=by_name) for v in value]
    if isinstance(value, str) and secrets:
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, REDACTED)
    return value


def _is_secret_field(name: str) -> bool:
    return bool(_SECRET_FIELD.search(name)) and not _NOT_SECRET_FIELD.search(name)
