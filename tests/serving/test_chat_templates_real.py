"""Real models' chat templates render our typed messages exactly as transformers renders what vLLM passes it.

Oracle: transformers' `apply_chat_template(messages, tools=..., **chat_template_kwargs, tokenize=True)` on the
OpenAI-format conversation converted the way vLLM converts it (assistant `tool_calls[].function.arguments`
JSON-decoded, tool messages keeping `tool_call_id` and `name`, tools as `tool.model_dump()`). The templates are
the models' own (tests/data/chat_templates, with their source); the tokenizer is the NeMo-written Llama 3.1
test tokenizer, so Llama's header tokens are real special tokens and other families' tags are plain text on
both sides.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from pytest_nemo_eval.checkpoint.tokenizer import HFTokenizer
from pytest_nemo_eval.serving.api_error import OpenAIError
from pytest_nemo_eval.serving.chat.messages import ChatMessage, ToolDefinition
from pytest_nemo_eval.serving.chat.prompt import render_prompt
from pytest_nemo_eval.serving.tool_parsers import choose_parser

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "chat_templates"
SHARED_TOKENIZER = Path(__file__).resolve().parents[3] / "shared" / "nemo-written" / "llama31-tiny" / "hf"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["C", "F"]}},
                   "required": ["city"]}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call12345", "type": "function",
         "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "C"})}}]},
    {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "18 degrees, sunny"},
    {"role": "assistant", "content": "It is 18 degrees and sunny in Paris."},
    {"role": "user", "content": [{"type": "text", "text": "And what is 2 plus "}, {"type": "text", "text": "3?"}]},
]
CASES = {
    "meta-llama-Llama-3.1-8B-Instruct": {"date_string": "07 Dec 2026"},
    "meta-llama-Llama-3.2-3B-Instruct": {"date_string": "07 Dec 2026", "tools_in_user_message": False},
    "Qwen-Qwen2.5-7B-Instruct": {},
    "mistralai-Mistral-Nemo-Instruct-2407": {},
}


def as_vllm_passes_it(conversation: list[dict]) -> list[dict]:
    """The oracle's input: OpenAI messages as vLLM hands them to apply_chat_template."""
    out = []
    for message in copy.deepcopy(conversation):
        if isinstance(message.get("content"), list):
            message["content"] = "".join(part["text"] for part in message["content"])
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
        out.append(message)
    return out


def vllm_tool_dump(tool: dict) -> dict:
    function = tool["function"]
    return {"type": "function", "function": {"name": function["name"], "description": function.get("description"),
                                             "parameters": function.get("parameters")}}


@pytest.fixture(scope="module")
def hf_folder() -> Path:
    if not (SHARED_TOKENIZER / "tokenizer.json").is_file():
        pytest.skip(f"the NeMo-written test tokenizer is not at {SHARED_TOKENIZER} (shared/ beside the clone)")
    return SHARED_TOKENIZER


def _tokenizers(folder: Path, template_name: str):
    from transformers import AutoTokenizer

    template = (TEMPLATES / f"{template_name}.jinja").read_text(encoding="utf-8")
    ours = HFTokenizer(folder, {"chat_template": template})
    theirs = AutoTokenizer.from_pretrained(str(folder))
    theirs.chat_template = template
    return ours, theirs


@pytest.mark.parametrize("template_name", sorted(CASES))
def test_tool_conversation_token_ids_equal_transformers(hf_folder, template_name):
    ours, theirs = _tokenizers(hf_folder, template_name)
    kwargs = CASES[template_name]
    conversation = CONVERSATION
    if template_name.startswith("meta-llama"):  # Llama's templates put tool results in `ipython` turns
        conversation = [m for m in CONVERSATION if m["role"] != "system"]
    tools = [WEATHER, ADD]
    prompt = render_prompt(ours, [ChatMessage.model_validate(m) for m in conversation],
                           tools=[ToolDefinition.model_validate(t) for t in tools], template_kwargs=kwargs)
    expected = theirs.apply_chat_template(as_vllm_passes_it(conversation), tools=[vllm_tool_dump(t) for t in tools],
                                          add_generation_prompt=True, tokenize=True, **kwargs)
    expected = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
    assert ours.encode(prompt) == expected
    assert "get_weather" in prompt and "Paris" in prompt  # the tools and the call reached the prompt
    rendered_without_tools = render_prompt(ours, [ChatMessage.model_validate(m) for m in conversation[:2]])
    assert len(ours.encode(prompt)) > len(ours.encode(rendered_without_tools))


@pytest.mark.parametrize("template_name, parser", [
    ("meta-llama-Llama-3.1-8B-Instruct", "llama3_json"), ("meta-llama-Llama-3.2-3B-Instruct", "llama3_json"),
    ("Qwen-Qwen2.5-7B-Instruct", "hermes"), ("Qwen-Qwen3-0.6B", "hermes"),
    ("mistralai-Mistral-Nemo-Instruct-2407", "mistral"),
])
def test_parser_is_chosen_from_the_real_template(template_name, parser):
    template = (TEMPLATES / f"{template_name}.jinja").read_text(encoding="utf-8")
    assert choose_parser(None, template).name == parser


def test_chat_template_kwargs_reach_the_template(hf_folder):
    """Qwen3's enable_thinking: off adds the empty think block to the generation prompt, as transformers does."""
    ours, theirs = _tokenizers(hf_folder, "Qwen-Qwen3-0.6B")
    messages = [{"role": "user", "content": "Hi"}]
    typed = [ChatMessage.model_validate(m) for m in messages]
    on = render_prompt(ours, typed, template_kwargs={"enable_thinking": True})
    off = render_prompt(ours, typed, template_kwargs={"enable_thinking": False})
    assert on != off and off.endswith("<think>\n\n</think>\n\n")
    assert off == theirs.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                             enable_thinking=False)


def test_a_template_that_ignores_tools_is_refused(hf_folder):
    ours, _ = _tokenizers(hf_folder, "Qwen-Qwen2.5-7B-Instruct")
    ours.chat_template = ours.hf.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(OpenAIError) as caught:
        render_prompt(ours, [ChatMessage(role="user", content="hi")], tools=[ToolDefinition.model_validate(ADD)])
    assert caught.value.status == 400 and caught.value.code == "tools_not_rendered"


def test_reserved_template_kwargs_are_refused(hf_folder):
    ours, _ = _tokenizers(hf_folder, "Qwen-Qwen2.5-7B-Instruct")
    with pytest.raises(OpenAIError) as caught:
        render_prompt(ours, [ChatMessage(role="user", content="hi")], template_kwargs={"tools": []})
    assert caught.value.param == "chat_template_kwargs" and "tools" in caught.value.message
