"""What every tool-call parser provides: parse a finished output, and say where a call starts while streaming."""

from __future__ import annotations

import json
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pytest_nemo_eval.serving.output_formats import FormatRegistry

INCOMPLETE = "tool_call_incomplete"  # vLLM's `stop_reason` slot: a call was started and never finished
INVALID = "tool_call_invalid"  # a finished call that is not valid JSON of {name, arguments}


@dataclass
class ParsedCall:
    name: str
    arguments: dict[str, Any]
    id: str | None = None

    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass
class ParsedOutput:
    """`content`: the text outside the calls (None when empty); `error`: why a started call was not parsed
    (then `calls` is empty and `content` is the raw output)."""

    content: str | None
    calls: list[ParsedCall] = field(default_factory=list)
    error: str | None = None


class ToolParser(ABC):
    name: ClassVar[str]
    template_markers: ClassVar[tuple[str, ...]]  # text in a chat template that means this format
    detection_priority: ClassVar[int] = 0  # higher is tried first (a template may contain another's marker)

    @classmethod
    def matches_template(cls, chat_template: str) -> bool:
        return any(marker in chat_template for marker in cls.template_markers)

    @abstractmethod
    def call_start(self, text: str) -> int | None:
        """Where the first call starts in `text` (all before it is content), or None when none has started."""

    def held_back(self, text: str) -> int:
        """How many trailing characters of `text` may still turn into a call start (held while streaming)."""
        return 0

    @abstractmethod
    def parse(self, text: str) -> ParsedOutput:
        """The calls in a finished output."""

    def new_call_id(self) -> str:
        """vLLM's form, `chatcmpl-tool-<hex>`; a family whose template checks ids overrides it."""
        return f"chatcmpl-tool-{secrets.token_hex(16)}"


def held_marker_prefix(text: str, marker: str) -> int:
    """The length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:length]):
            return length
    return 0


def call_of_json(obj: Any, argument_keys: tuple[str, ...] = ("arguments",)) -> ParsedCall | None:
    """A `{"name": str, "<argument key>": object}` JSON value as a call, else None."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    for key in argument_keys:
        if key in obj:
            arguments = obj[key]
            if isinstance(arguments, str):  # some models write the arguments as a JSON string
                try:
                    arguments = json.loads(arguments)
                except ValueError:
                    return None
            return ParsedCall(obj["name"], arguments) if isinstance(arguments, dict) else None
    return ParsedCall(obj["name"], {})


REGISTRY: FormatRegistry[ToolParser] = FormatRegistry(__package__ or "", [str(Path(__file__).parent)],
                                                      "--nemo-tool-parser")
register = REGISTRY.register
