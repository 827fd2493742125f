"""Where a harness's output goes: a log file in the output dir and, prefixed, the caller's callback.

Both runtimes feed it line by line, so a long benchmark shows progress in the
pytest log as it happens, and error messages can quote the file's tail.
Known secret values (the API key, the suite's `env` variables) are masked before a
line goes anywhere — those of at least MIN_MASKED_LENGTH characters: masking a
value like `1` (HF_HUB_OFFLINE=1) would garble every line and protect nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

REDACTED = "***"
MIN_MASKED_LENGTH = 4


class LogSink:
    def __init__(
        self,
        log_path: Path,
        *,
        prefix: str = "",
        on_log: Callable[[str], None] | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.log_path = Path(log_path)
        # a bare name becomes "[name] "; a prefix already ending in a space is used as given
        self.prefix = prefix if not prefix or prefix.endswith(" ") else f"[{prefix}] "
        self._on_log = on_log
        self._secrets = sorted((s for s in secrets if len(s) >= MIN_MASKED_LENGTH), key=len, reverse=True)
        self._lock = threading.Lock()
        self._file = self.log_path.open("w", encoding="utf-8")

    def line(self, text: str) -> None:
        """Record one line of harness output (trailing newline optional)."""
        text = text.rstrip("\r\n")
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        with self._lock:
            self._file.write(text + "\n")
            self._file.flush()
        if self._on_log is not None:
            self._on_log(self.prefix + text)

    def feed_bytes(self, chunks: Iterable[bytes]) -> None:
        """Split a byte stream (e.g. Docker logs) into lines and record them."""
        pending = b""
        for chunk in chunks:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                self.line(raw.decode("utf-8", errors="replace"))
        if pending:
            self.line(pending.decode("utf-8", errors="replace"))

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def __enter__(self) -> "LogSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
