"""Read a task's JSONL data; every problem names the file and line, so a user can fix it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import HarnessError


class DatasetError(HarnessError):
    """A task's data file is missing or has a bad line."""


def load_jsonl(path: Path, required_fields: Iterable[str]) -> list[dict[str, Any]]:
    """All records of `path`, each checked to carry `required_fields` (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"Dataset file {path} does not exist. Check the `data:` path of the task spec "
            "(relative paths are resolved from the spec file's folder)."
        )
    required = list(required_fields)
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{path}:{line_number}: not valid JSON ({exc.msg} at column {exc.colno}). "
                    "Each line must be one JSON object; fix or remove that line."
                ) from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}.")
            missing = [name for name in required if name not in record]
            if missing:
                raise DatasetError(
                    f"{path}:{line_number}: record lacks field(s) {', '.join(missing)} "
                    f"required by the task spec (it has: {', '.join(record) or 'nothing'})."
                )
            records.append(record)
    if not records:
        raise DatasetError(f"Dataset file {path} holds no records.")
    return records
