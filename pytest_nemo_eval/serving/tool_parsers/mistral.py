"""Mistral: `[TOOL_CALLS]` then a JSON array of `{"name", "arguments"}` (v3 tokenizers, Mistral Nemo), or
`[TOOL_CALLS]name[ARGS]{...}` per call (v11+); text before is content. Mistral's templates require
9-character alphanumeric call ids, so ours are made that way."""

from __future__ import annotations

import json
import secrets
import string

from .base import INCOMPLETE, INVALID, ParsedCall, ParsedOutput, ToolParser, call_of_json, held_marker_prefix, register

TOOL_CALLS, ARGS = "[TOOL_CALLS]", "[ARGS]"
_ID_ALPHABET = string.ascii_letters + string.digits


@register
class MistralToolParser(ToolParser):
    name = "mistral"
    template_markers = (TOOL_CALLS,)

    def call_start(self, text: str) -> int | None:
        index = text.find(TOOL_CALLS)
        return None if index < 0 else index

    def held_back(self, text: str) -> int:
        return held_marker_prefix(text, TOOL_CALLS)

    def new_call_id(self) -> str:
        return "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))

    def parse(self, text: str) -> ParsedOutput:
        start = self.call_start(text)
        if start is None:
            return ParsedOutput(text or None)
        content = text[:start] if text[:start].strip() else None
        segments = [segment.strip() for segment in text[start:].split(TOOL_CALLS) if segment.strip()]
        calls: list[ParsedCall] = []
        for segment in segments:
            parsed = _array_form(segment) if segment.startswith("[") else _args_form(segment)
            if isinstance(parsed, str):
                return ParsedOutput(text, error=parsed)
            calls.extend(parsed)
        return ParsedOutput(content, calls) if calls else ParsedOutput(text, error=INCOMPLETE)


def _array_form(segment: str) -> list[ParsedCall] | str:
    try:
        value = json.loads(segment)
    except ValueError:
        return INCOMPLETE if segment.count("[") > segment.count("]") else INVALID
    items = value if isinstance(value, list) else [value]
    calls = [call_of_json(item) for item in items]
    return INVALID if not calls or any(call is None for call in calls) else calls  # type: ignore[return-value]


def _args_form(segment: str) -> list[ParsedCall] | str:
    name, found, arguments = segment.partition(ARGS)
    if not found:
        return INCOMPLETE
    try:
        value = json.loads(arguments)
    except ValueError:
        return INCOMPLETE if arguments.count("{") > arguments.count("}") else INVALID
    return [ParsedCall(name.strip(), value)] if isinstance(value, dict) and name.strip() else INVALID
