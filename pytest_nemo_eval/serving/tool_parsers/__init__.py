"""Tool-call parsers, one file per output format (a new model family is one new file here).

Each module defines a `ToolParser` subclass decorated with `@register`; every module of this package is
imported on first use, so nothing else needs editing. A parser is chosen by name (`--nemo-tool-parser`, as
vLLM's `--tool-call-parser`) or, when none is named, from the chat template: the first parser one of whose
`template_markers` the template contains.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import ParsedCall, ParsedOutput, ToolParser, register, registered

__all__ = ["ParsedCall", "ParsedOutput", "ToolParser", "register", "parser_names", "choose_parser"]


def _load_all() -> dict[str, type[ToolParser]]:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    return registered()


def parser_names() -> list[str]:
    return sorted(_load_all())


def choose_parser(name: str | None, chat_template: str | None) -> ToolParser | None:
    """The parser named, or the one the template's markers pick; None when the template shows no known format."""
    parsers = _load_all()
    if name:
        if name not in parsers:
            raise ValueError(f"Unknown tool-call parser {name!r}; choose one of {', '.join(sorted(parsers))} "
                             "(--nemo-tool-parser), or leave it unset to pick it from the chat template.")
        return parsers[name]()
    if not chat_template:
        return None
    for parser in sorted(parsers.values(), key=lambda p: -p.detection_priority):
        if any(marker in chat_template for marker in parser.template_markers):
            return parser()
    return None
