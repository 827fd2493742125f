"""Pydantic models of the OpenAI-compatible requests we accept, and the error we answer with.

Only what the engine can honour is accepted; anything it cannot (n > 128, a
negative max_tokens, ...) is a 400 naming the parameter, never a silent
approximation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from pytest_nemo_eval.serving.api_error import OpenAIError  # noqa: F401 - re-exported
from pytest_nemo_eval.serving.chat.constraints import ResponseFormat, StructuredOutputsParams
from pytest_nemo_eval.serving.chat.messages import ChatMessage, NamedToolChoice, ToolChoice, ToolDefinition

MAX_LOGPROBS = 20
MAX_CHOICES = 128  # n: choices per prompt; they decode side by side in the engine


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False  # a last chunk with `usage` (and no choices) before [DONE]


class SamplingParams(BaseModel):
    """The parameters completions and chat share. Unknown top-level fields are ignored as vLLM ignores them,
    but kept in `model_extra` so the front logs each name once and reports it (ignored_fields)."""

    model_config = ConfigDict(extra="allow")

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


class StructuredFields(BaseModel):
    """What constrains the output, on both routes as in vLLM (serving/chat/constraints.py reads them)."""

    response_format: ResponseFormat | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    structured_outputs: StructuredOutputsParams | None = None


class CompletionRequest(SamplingParams, StructuredFields):
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


class ChatCompletionRequest(SamplingParams, StructuredFields):
    """POST /v1/chat/completions: every field vLLM's chat route takes that this server can honour.

    Tools reach the checkpoint's chat template; `tool_choice` "auto" parses calls out of the reply with the
    deployment's tool parser; "required" and a named function constrain the output (serving/chat/constraints.py),
    as do `response_format`, vLLM's `guided_*` fields and `structured_outputs`.
    """

    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    echo: bool = False  # vLLM: the reply's content starts with the last message's when that is the assistant's
    include_reasoning: bool = True  # vLLM: false leaves the thought (reasoning_content) out of the reply

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self):
        """vLLM's checks: a tool choice other than none needs tools, and a named function must be one of them.
        (OpenAIError, not ValueError: pydantic passes it through with the parameter it names.)"""
        def refuse(param: str, message: str) -> OpenAIError:
            return OpenAIError(400, f"Invalid parameter `{param}`: {message}.", param=param)

        if self.tool_choice not in (None, "none") and not self.tools:
            raise refuse("tool_choice", "when `tool_choice` is set (other than \"none\"), `tools` must be set too")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = [tool.function.name for tool in self.tools or []]
            if self.tool_choice.function.name not in names:
                raise refuse("tool_choice", f"it names the function {self.tool_choice.function.name!r}, which is not "
                                            f"among the tools offered ({', '.join(names)})")
        if self.add_generation_prompt and self.continue_final_message:
            raise refuse("continue_final_message", "cannot set both `continue_final_message` and "
                         "`add_generation_prompt` to true (vLLM's rule): send add_generation_prompt false to continue "
                         "the last message")
        if self.continue_final_message and self.messages[-1].role != "assistant":
            raise refuse("continue_final_message", "it continues the last message, which must be the assistant's")
        return self

    def tool_mode(self) -> str:
        """"plain" (no tools, or tool_choice none), "auto", "required" or "named"."""
        if not self.tools or self.tool_choice == "none":
            return "plain"
        if isinstance(self.tool_choice, NamedToolChoice):
            return "named"
        return "required" if self.tool_choice == "required" else "auto"


class TokenizeRequest(BaseModel):
    """POST /tokenize, vLLM's shape: `prompt` (text) or `messages` (rendered with the chat template)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: StrictBool = True
    add_generation_prompt: StrictBool = True
    continue_final_message: StrictBool = False
    tools: list[ToolDefinition] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
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
