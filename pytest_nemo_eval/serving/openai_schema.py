"""Pydantic models of the OpenAI-compatible requests we accept, and the error we answer with.

Only what the engine can honour is accepted; anything it cannot (n > 128, a
negative max_tokens, ...) is a 400 naming the parameter, never a silent
approximation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

MAX_LOGPROBS = 20
MAX_CHOICES = 128  # n: choices per prompt; they decode side by side in the engine


class OpenAIError(Exception):
    """An error answered as OpenAI's `{"error": {message, type, param, code}}` with an HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    @property
    def type(self) -> str:
        return "invalid_request_error" if self.status < 500 else "server_error"

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False  # a last chunk with `usage` (and no choices) before [DONE]


class SamplingParams(BaseModel):
    """The parameters completions and chat share."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)  # choice j samples with generation.choice_seed(seed, j)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False  # vLLM's extension: keep generating past the end-of-sequence token

    @model_validator(mode="after")
    def _stream_options_need_stream(self):
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream=true")
        return self

    @field_validator("temperature", "top_p", mode="before")
    @classmethod
    def _none_is_default(cls, value, info):
        if value is None:
            return cls.model_fields[info.field_name].default
        return value

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(SamplingParams):
    """POST /v1/completions. `prompt`: a string, a list of strings, token ids, or lists of token ids."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        return value


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text; content parts of type "text" are joined, others refused."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise OpenAIError(400, f"content part {part.get('type')!r} is not supported; send text parts only.",
                                  param="messages")
            texts.append(part["text"])
        return "".join(texts)


class ChatCompletionRequest(SamplingParams):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    tools: list[Any] | None = None
    tool_choice: Any = None

    @model_validator(mode="after")
    def _no_native_function_calling(self):
        """This server renders no `tools` into the prompt and parses no tool calls out of replies, so a request
        that offers tools would be answered as if it offered none, and a function-calling benchmark would score
        a model that never saw the functions. Refused instead, as vLLM refuses `auto` tool choice unless it was
        started with a tool-call parser; `tool_choice: "none"` (no calls wanted) still passes."""
        if self.tools and self.tool_choice != "none":
            raise OpenAIError(
                400, "This server does no native function calling: it renders no `tools` into the prompt and "
                     "parses no tool calls, so this request would be answered as if it offered no tools. Describe "
                     "the functions in the messages instead (BFCL: the *_prompting tasks, e.g. "
                     "bfclv2_ast_prompting rather than bfclv2_ast), or send tool_choice \"none\".",
                param="tools", code="tools_not_supported")
        return self


class TokenizeRequest(BaseModel):
    """POST /tokenize, vLLM's shape: `prompt` (text) or `messages` (rendered with the chat template)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: StrictBool = True
    add_generation_prompt: StrictBool = True
    return_token_strs: StrictBool = False

    @model_validator(mode="after")
    def _prompt_or_messages(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send exactly one of `prompt` (a string) or `messages`")
        return self


class DetokenizeRequest(BaseModel):
    """POST /detokenize, vLLM's shape: `tokens`, a list of token ids."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    tokens: list[StrictInt]
