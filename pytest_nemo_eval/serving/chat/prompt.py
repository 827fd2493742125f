"""The chat prompt, rendered by the checkpoint's own template exactly as vLLM renders it:
`apply_chat_template(messages, tools=[...], add_generation_prompt, continue_final_message,
**chat_template_kwargs)`.

A template that ignores `tools` would have the model answer as if no functions were offered: when tools are
sent, the prompt is rendered without them too, and equal prompts are a 400 naming the template.
"""

from __future__ import annotations

from typing import Any

from pytest_nemo_eval.serving.api_error import OpenAIError

from .messages import ChatMessage, ToolDefinition

# Arguments the route itself passes; chat_template_kwargs may not set them behind its back.
RESERVED_TEMPLATE_KWARGS = frozenset({"messages", "conversation", "tools", "documents", "add_generation_prompt",
                                      "continue_final_message", "tokenize", "chat_template", "return_dict"})


def render_prompt(tokenizer: Any, messages: list[ChatMessage], *, tools: list[ToolDefinition] | None = None,
                  add_generation_prompt: bool = True, continue_final_message: bool = False,
                  template_kwargs: dict[str, Any] | None = None) -> str:
    kwargs = dict(template_kwargs or {})
    reserved = sorted(RESERVED_TEMPLATE_KWARGS & kwargs.keys())
    if reserved:
        raise OpenAIError(400, f"chat_template_kwargs may not set {', '.join(reserved)}: the request's own fields "
                               "set them (messages, tools, add_generation_prompt, continue_final_message).",
                          param="chat_template_kwargs")
    conversation = [message.for_template() for message in messages]
    tool_dicts = [tool.for_template() for tool in tools] if tools else None

    def render(with_tools: list[dict[str, Any]] | None) -> str:
        try:
            return tokenizer.apply_chat_template(conversation, add_generation_prompt, tools=with_tools,
                                                 continue_final_message=continue_final_message, **kwargs)
        except OpenAIError:
            raise
        except Exception as exc:  # jinja raises many types; any of them means these messages do not fit it
            raise OpenAIError(400, f"The chat template cannot render these messages: {exc}",
                              param="messages") from None

    prompt = render(tool_dicts)
    if tool_dicts and prompt == render(None):
        raise OpenAIError(
            400, "This checkpoint's chat template does not render `tools`: the prompt with the tools equals the "
                 "prompt without them, so the model would answer as if no functions were offered. Serve a checkpoint "
                 "whose chat template renders tools (model.yaml's tokenizer `chat_template`, or "
                 "context/nemo_tokenizer/chat_template.jinja), or describe the functions in the messages "
                 "(BFCL: the *_prompting tasks).", param="tools", code="tools_not_rendered")
    return prompt
