"""Llama 3.1 / 3.2 JSON tool calls: the whole output is `{"name": ..., "parameters": {...}}` (or `arguments`),
optionally after `<|python_tag|>`, several separated by `;`."""

from __future__ import annotations

import json

from .base import INCOMPLETE, INVALID, ParsedOutput, ToolParser, call_of_json, register

PYTHON_TAG = "<|python_tag|>"


@register
class Llama3JsonToolParser(ToolParser):
    name = "llama3_json"
    template_markers = ("dictionary of argument name and its value", PYTHON_TAG)

    def call_start(self, text: str) -> int | None:
        stripped = text.lstrip()
        if stripped.startswith(PYTHON_TAG) or stripped.startswith("{"):
            return len(text) - len(stripped)
        return None

    def held_back(self, text: str) -> int:
        stripped = text.lstrip()
        return len(text) if PYTHON_TAG.startswith(stripped) or not stripped else 0

    def parse(self, text: str) -> ParsedOutput:
        start = self.call_start(text)
        if start is None:
            return ParsedOutput(text or None)
        body = text[start:].removeprefix(PYTHON_TAG).strip()
        decoder, calls, position = json.JSONDecoder(), [], 0
        while position < len(body):
            try:
                value, position = decoder.raw_decode(body, position)
            except ValueError:
                truncated = body.count("{") > body.count("}")
                return ParsedOutput(text, error=INCOMPLETE if truncated else INVALID)
            call = call_of_json(value, ("parameters", "arguments"))
            if call is None:
                return ParsedOutput(text, error=INVALID)
            calls.append(call)
            while position < len(body) and body[position] in " \n\t;":
                position += 1
        return ParsedOutput(None, calls) if calls else ParsedOutput(text, error=INVALID)
