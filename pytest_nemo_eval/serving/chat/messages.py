"""The one typed model of chat messages and tools, and how each reaches the chat template (as vLLM passes them).

Every field a template may need is kept: an assistant turn's `tool_calls` (arguments JSON-decoded to an
object, since templates apply `tojson`), a tool turn's `tool_call_id` and `name`, an earlier turn's
`reasoning_content`, text content parts. A field we cannot honour is refused by name, never dropped: a
message key we do not know is accepted only when it is null or empty, as OpenAI SDK objects dumped back into
a conversation carry (`refusal: null`, `audio: null`, `annotations: []`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pytest_nemo_eval.serving.api_error import OpenAIError

TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_.-]{1,64}$"  # OpenAI's rule for function names


class FunctionCall(BaseModel):
    """A call as the client sends it back: `arguments` is a JSON string that must hold an object."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    arguments: str

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            decoded = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"must be a JSON string of an object; it does not parse as JSON ({exc})") from None
        if not isinstance(decoded, dict):
            raise ValueError(f"must be a JSON object (the call's named arguments), not {type(decoded).__name__}")
        return value


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall

    def for_template(self) -> dict[str, Any]:
        call: dict[str, Any] = {"type": "function",
                                "function": {"name": self.function.name,
                                             "arguments": json.loads(self.function.arguments)}}
        if self.id is not None:
            call["id"] = self.id
        return call


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One turn of a conversation, typed; `for_template()` is the dict the chat template sees."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _reasoning_alias(cls, data: Any) -> Any:
        """vLLM's newer name `reasoning` is the same field as `reasoning_content` (our replies carry both, and
        clients send them back as they got them); two different thoughts in one message are refused."""
        if not isinstance(data, dict) or "reasoning" not in data:
            return data
        data = dict(data)
        reasoning = data.pop("reasoning")
        if reasoning is not None:
            if data.get("reasoning_content") not in (None, reasoning):
                raise ValueError("`reasoning` and `reasoning_content` are the same field and differ here; send one")
            data["reasoning_content"] = reasoning
        return data

    @model_validator(mode="after")
    def _no_unhonoured_fields(self) -> "ChatMessage":
        for key, value in (self.model_extra or {}).items():
            if value in (None, [], {}, ""):
                continue
            hint = " Send `tool_calls` instead (function_call is OpenAI's deprecated form)." if key == "function_call" else ""
            raise ValueError(f"the message field `{key}` is not supported by this server, and it would be dropped "
                             f"before the chat template sees it; remove it.{hint}")
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError(f"only assistant messages carry `tool_calls` (this one is `{self.role}`)")
        if self.role == "tool" and self.tool_call_id is None:
            raise ValueError("a tool message needs the `tool_call_id` of the call it answers")
        return self

    def text(self) -> str:
        """The message's text; content parts of type "text" are joined (vLLM's string content format)."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for index, part in enumerate(self.content):
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise OpenAIError(400, f"content part {index} has type {part.get('type')!r}, which this text-only "
                                       "model cannot take; send text parts only.", param="messages")
            texts.append(part["text"])
        return "".join(texts)

    def for_template(self) -> dict[str, Any]:
        """The message as transformers' apply_chat_template takes it from vLLM."""
        message: dict[str, Any] = {"role": self.role}
        if self.tool_calls:
            message["content"] = self.text() if self.content is not None else None
            message["tool_calls"] = [call.for_template() for call in self.tool_calls]
        else:
            message["content"] = self.text()
        for key in ("name", "tool_call_id", "reasoning_content"):
            if getattr(self, key) is not None:
                message[key] = getattr(self, key)
        return message


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _json_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        import jsonschema

        try:
            jsonschema.validators.validator_for(value).check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"is not a valid JSON schema ({exc.message})") from None
        return value


class ToolDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDefinition

    def for_template(self) -> dict[str, Any]:
        """vLLM's `tool.model_dump()`: name, description and parameters always (null when not given, which
        templates that apply `tojson` to the whole tool render), `strict` only when sent."""
        function = self.function.model_dump(exclude={"strict"})
        if self.function.strict is not None:
            function["strict"] = self.function.strict
        return {"type": "function", "function": function}


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class NamedToolChoice(BaseModel):
    """`{"type": "function", "function": {"name": ...}}`: the reply must call that function."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice
