"""Server-Sent Events parsing, in one place: the `data:` payloads of an event stream.

Used on whole bodies (the proxy's stream recorder) and on bodies as they arrive
(the serving backends' clients), so a token is handed on as soon as its event ends.
"""

from __future__ import annotations

from typing import Iterable, Iterator


def sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    """The `data:` payload of each event (multi-line data joined with newlines), as soon as its event ends.

    Events end with a blank line (CRLF or LF); a last event without one is still returned at the end."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk.replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            payload = _payload(event)
            if payload is not None:
                yield payload
    payload = _payload(buffer)
    if payload is not None:
        yield payload


def sse_payloads(body: bytes) -> list[str]:
    """The `data:` payloads of a whole SSE body, in order."""
    return list(sse_data([body]))


def _payload(event: bytes) -> str | None:
    lines = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines).decode(errors="replace") if lines else None
