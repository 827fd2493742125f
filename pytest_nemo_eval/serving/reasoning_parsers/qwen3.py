"""Qwen3 (and templates that take `enable_thinking` as Qwen3's does): a reply that starts with `<think>` thinks
until `</think>`; one without `<think>` did not think (thinking off: the template closed an empty thought in the
prompt), so it is all content. Unlike vLLM's qwen3 parser, a reply that opened `<think>` and never closed it is
a thought cut off, never an answer: its content is empty, so a half-thought is never scored."""

from __future__ import annotations

from .base import ReasoningParser, register


@register
class Qwen3ReasoningParser(ReasoningParser):
    name = "qwen3"
    template_markers = ("enable_thinking", "<think>", "</think>")
    detection_priority = 1
    thinks_without_start = False
