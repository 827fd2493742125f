"""Reasoning parsers, one file per format (a new family is one new file here): they split a reply's thought
from its answer, as vLLM's `--reasoning-parser` does. Chosen by name (`--nemo-reasoning-parser`) or, when none
is named, from the chat template (the first parser whose `template_markers` all occur in it)."""

from __future__ import annotations

from .base import REGISTRY, ReasoningParser, ReasoningSplit, register

__all__ = ["ReasoningParser", "ReasoningSplit", "register", "parser_names", "choose_reasoning_parser"]

parser_names = REGISTRY.names
choose_reasoning_parser = REGISTRY.choose
