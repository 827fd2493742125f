"""Pythonic tool calls (Llama 3.2 / 4 pythonic templates, vLLM's `pythonic`): the output is a Python list of
calls with literal keyword arguments, `[get_weather(city='Paris'), add(a=1, b=2)]`, read with `ast` (never
evaluated), optionally inside `<|python_start|>` ... `<|python_end|>`."""

from __future__ import annotations

import ast

from .base import INCOMPLETE, INVALID, ParsedCall, ParsedOutput, ToolParser, register

PYTHON_START, PYTHON_END = "<|python_start|>", "<|python_end|>"


@register
class PythonicToolParser(ToolParser):
    name = "pythonic"
    template_markers = ("[func_name1(params_name1=params_value1",)
    detection_priority = 1  # such templates may also mention JSON

    def call_start(self, text: str) -> int | None:
        stripped = text.lstrip()
        if stripped.startswith(PYTHON_START) or stripped.startswith("["):
            return len(text) - len(stripped)
        return None

    def held_back(self, text: str) -> int:
        stripped = text.lstrip()
        return len(text) if PYTHON_START.startswith(stripped) or not stripped else 0

    def parse(self, text: str) -> ParsedOutput:
        start = self.call_start(text)
        if start is None:
            return ParsedOutput(text or None)
        body = text[start:].strip().removeprefix(PYTHON_START).removesuffix(PYTHON_END).strip()
        try:
            tree = ast.parse(body, mode="eval")
        except SyntaxError:
            return ParsedOutput(text, error=INCOMPLETE if body.count("[") > body.count("]") else INVALID)
        if not isinstance(tree.body, ast.List):
            return ParsedOutput(text, error=INVALID)
        calls = []
        for node in tree.body.elts:
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
                return ParsedOutput(text, error=INVALID)
            try:
                arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None}
            except ValueError:
                return ParsedOutput(text, error=INVALID)
            calls.append(ParsedCall(node.func.id, arguments))
        return ParsedOutput(None, calls) if calls else ParsedOutput(text, error=INVALID)
