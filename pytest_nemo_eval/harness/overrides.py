"""NeMo Evaluator's `--overrides k=v,k2=v2` syntax, both ways, as nemo-evaluator 0.2.8 reads it.

nemo-evaluator (core/input.py `parse_override_params`) splits on commas outside single or double
quotes, then YAML-parses each value. So a value holding a comma travels single-quoted, YAML-style
(`'a,b'`, an inner `'` doubled): its splitter and YAML both read that back as the plain string.
The builtin harness's CLI reads the same syntax with `split_overrides`.
"""

from __future__ import annotations

from typing import Any

import yaml


def override_value(value: Any) -> str:
    """One value as the CLI carries it: booleans lower-case; a value with a comma quoted."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if "," in text:
        return "'" + text.replace("'", "''") + "'"
    return text


def join_overrides(overrides: dict[str, Any]) -> str:
    return ",".join(f"{key}={override_value(value)}" for key, value in overrides.items())


def split_overrides(text: str | None) -> list[tuple[str, str | None]]:
    """`k=v,...` -> [(k, v)] with nemo-evaluator's quote-aware split; quoted values are unquoted (YAML);
    v is None for an item without `=`."""
    items, current, quote = [], "", None
    for char in text or "":
        if char in ('"', "'") and quote is None:
            quote = char
        elif char == quote:
            quote = None
        elif char == "," and quote is None:
            items.append(current.strip())
            current = ""
            continue
        current += char
    if current.strip():
        items.append(current.strip())
    pairs = []
    for item in filter(None, items):
        key, sep, value = item.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            try:
                value = str(yaml.safe_load(value))
            except yaml.YAMLError:
                pass
        pairs.append((key.strip(), value) if sep else (item, None))
    return pairs
