"""Tool-call parsers, one file per output format (a new model family is one new file here).

Each module defines a `ToolParser` subclass decorated with `@register`; every module of this package is
imported on first use, so nothing else needs editing. A parser is chosen by name (`--nemo-tool-parser`, as
vLLM's `--tool-call-parser`) or, when none is named, from the chat template: the first parser one of whose
`template_markers` the template contains.
"""

from __future__ import annotations

from .base import REGISTRY, ParsedCall, ParsedOutput, ToolParser, register

__all__ = ["ParsedCall", "ParsedOutput", "ToolParser", "register", "parser_names", "choose_parser"]

parser_names = REGISTRY.names
choose_parser = REGISTRY.choose
