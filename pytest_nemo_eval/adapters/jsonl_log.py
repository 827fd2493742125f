"""Append-only JSONL file shared by the threads of a route, bounded to `max_entries`.

Each line is written and flushed under a lock, so lines never interleave and a
crash loses at most the line being written.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


class JsonlLog:
    def __init__(self, path: Path, max_entries: int | None) -> None:
        self.path = path
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def wants_more(self) -> bool:
        """Cheap check before building an entry: is there room left?"""
        return self.max_entries is None or self._written < self.max_entries

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            if not self.wants_more() or self._file.closed:
                return
            self._file.write(line)
            self._file.flush()
            self._written += 1

    def close(self) -> None:
        with self._lock:
            self._file.close()
