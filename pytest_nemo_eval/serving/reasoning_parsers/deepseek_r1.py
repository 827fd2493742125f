"""DeepSeek-R1: everything before `</think>` is the thought (`<think>` optional: R1's template opens it in the
prompt); a reply without `</think>` is all thought, cut off before its answer."""

from __future__ import annotations

from .base import ReasoningParser, register


@register
class DeepSeekR1ReasoningParser(ReasoningParser):
    name = "deepseek_r1"
    template_markers = ("<｜Assistant｜>", "</think>")
    thinks_without_start = True
