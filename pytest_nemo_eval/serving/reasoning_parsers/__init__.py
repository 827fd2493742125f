"""Reasoning parsers, one file per format (a new family is one new file here): they split a reply's thought
from its answer, as vLLM's `--reasoning-parser` does. Chosen by name (`--nemo-reasoning-parser`) or, when none
is named, from the chat template (the first parser whose `template_markers` all occur in it)."""

from __future__ import annotations

import importlib
import pkgutil

from .base import ReasoningParser, ReasoningSplit, register, registered

__all__ = ["ReasoningParser", "ReasoningSplit", "register", "parser_names", "choose_reasoning_parser"]


def _load_all() -> dict[str, type[ReasoningParser]]:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    return registered()


def parser_names() -> list[str]:
    return sorted(_load_all())


def choose_reasoning_parser(name: str | None, chat_template: str | None) -> ReasoningParser | None:
    parsers = _load_all()
    if name:
        if name not in parsers:
            raise ValueError(f"Unknown reasoning parser {name!r}; choose one of {', '.join(sorted(parsers))} "
                             "(--nemo-reasoning-parser), or leave it unset to pick it from the chat template.")
        return parsers[name]()
    if not chat_template:
        return None
    for parser in sorted(parsers.values(), key=lambda p: -p.detection_priority):
        if parser.template_markers and all(marker in chat_template for marker in parser.template_markers):
            return parser()
    return None
