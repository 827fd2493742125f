"""What every reasoning parser provides: the final split of a reply, and the settled part of a streamed one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pytest_nemo_eval.serving.output_formats import FormatRegistry

@dataclass
class ReasoningSplit:
    """`reasoning`: the thought (None: the reply did not think); `content`: the answer; `ended`: the thought was
    closed (False with a thought means the reply stopped inside it)."""

    reasoning: str | None
    content: str
    ended: bool = True


def held_prefix(text: str, marker: str) -> int:
    """The length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:length]):
            return length
    return 0


class ReasoningParser:
    """`<think>` ... `</think>` formats; subclasses say whether a reply without `<think>` thought at all."""

    name: ClassVar[str]
    template_markers: ClassVar[tuple[str, ...]] = ()
    detection_priority: ClassVar[int] = 0
    start: ClassVar[str] = "<think>"
    end: ClassVar[str] = "</think>"
    thinks_without_start: ClassVar[bool] = True  # deepseek_r1: the template opens the thought in the prompt

    @classmethod
    def matches_template(cls, chat_template: str) -> bool:
        return bool(cls.template_markers) and all(marker in chat_template for marker in cls.template_markers)

    def split(self, text: str) -> ReasoningSplit:
        """The finished reply's thought and answer."""
        started = text.startswith(self.start)
        if not started and not self.thinks_without_start:
            return ReasoningSplit(None, text)
        body = text[len(self.start):] if started else text
        reasoning, found, content = body.partition(self.end)
        if not found:
            return ReasoningSplit(body, "", ended=False)
        return ReasoningSplit(reasoning, content)

    def partial(self, text: str) -> ReasoningSplit:
        """The settled part of a reply still being generated: text that may still become a marker is held,
        and `content` stays empty (with ended False) while the thought is open."""
        if self.start.startswith(text) and text != self.start:
            return ReasoningSplit("", "", ended=False)  # may still become <think>
        started = text.startswith(self.start)
        if not started and not self.thinks_without_start:
            return ReasoningSplit(None, text)
        body = text[len(self.start):] if started else text
        reasoning, found, content = body.partition(self.end)
        if found:
            return ReasoningSplit(reasoning, content)
        return ReasoningSplit(body[: len(body) - held_prefix(body, self.end)], "", ended=False)


REGISTRY: FormatRegistry[ReasoningParser] = FormatRegistry(__package__ or "", [str(Path(__file__).parent)],
                                                           "--nemo-reasoning-parser")
register = REGISTRY.register
