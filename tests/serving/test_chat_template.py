"""The chat prompt: the tokenizer's own template when it has one, the documented default otherwise."""

from __future__ import annotations

import jinja2
import pytest

from pytest_nemo_eval.serving.chat_template import DEFAULT_CHAT_TEMPLATE, render_chat

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]


def test_default_template_renders_roles_and_ends_with_the_assistant_turn():
    assert render_chat(MESSAGES, None) == "<|system|>Be brief.\n<|user|>What is 2+2?\n<|assistant|>"


def test_the_tokenizers_template_wins_over_the_default():
    template = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }} {% endfor %}>>"
    assert render_chat(MESSAGES, template, bos_token="<s>") == "<s>[system] Be brief. [user] What is 2+2? >>"
    assert template != DEFAULT_CHAT_TEMPLATE


def test_templates_that_refuse_a_conversation_raise_a_template_error():
    template = "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be the user') }}{% endif %}"
    with pytest.raises(jinja2.TemplateError, match="first message must be the user"):
        render_chat(MESSAGES, template)


def test_templates_run_sandboxed():
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_chat(MESSAGES, "{{ messages.__class__.__mro__ }}")
