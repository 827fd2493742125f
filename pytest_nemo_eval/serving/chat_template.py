"""Turn chat messages into a prompt: the tokenizer's jinja chat template, or our documented default.

DEFAULT_CHAT_TEMPLATE (used when tokenizer_config.json has no `chat_template`)
renders every message as `<|role|>content` followed by a newline and ends with
`<|assistant|>`, the format the demo checkpoint is trained on:

    <|system|>Be brief.
    <|user|>What is 2+2?
    <|assistant|>
"""

from __future__ import annotations

from functools import lru_cache

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _raise_exception(message: str):
    raise jinja2.TemplateError(message)


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    return env.from_string(template)


def render_chat(messages: list[dict[str, str]], template: str | None, *, bos_token: str = "", eos_token: str = "") -> str:
    """The prompt text for `messages` (dicts with role and content), ready for the assistant's turn."""
    return _compile(template or DEFAULT_CHAT_TEMPLATE).render(
        messages=messages, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token
    )
