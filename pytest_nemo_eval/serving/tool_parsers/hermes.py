"""Hermes / Qwen2.5 / Qwen3: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, text before is content."""

from __future__ import annotations

import json

from .base import INCOMPLETE, INVALID, ParsedOutput, ToolParser, call_of_json, held_marker_prefix, register

START, END = "<tool_call>", "</tool_call>"


@register
class HermesToolParser(ToolParser):
    name = "hermes"
    template_markers = (START,)

    def call_start(self, text: str) -> int | None:
        index = text.find(START)
        return None if index < 0 else index

    def held_back(self, text: str) -> int:
        return held_marker_prefix(text, START)

    def parse(self, text: str) -> ParsedOutput:
        start = self.call_start(text)
        if start is None:
            return ParsedOutput(text or None)
        calls, rest = [], text[start:]
        while rest.startswith(START):
            end = rest.find(END)
            body = rest[len(START):] if end < 0 else rest[len(START):end]
            try:
                call = call_of_json(json.loads(body))
            except ValueError:
                call = None
            if call is None:
                # an unclosed call whose JSON is cut off was never finished; a closed one that is not a call is bad
                return ParsedOutput(text, error=INCOMPLETE if end < 0 else INVALID)
            calls.append(call)
            rest = "" if end < 0 else rest[end + len(END):].lstrip()
        if rest.strip():
            return ParsedOutput(text, error=INVALID)  # text after the calls that is not another call
        content = text[:start]
        return ParsedOutput(content if content.strip() else None, calls)
