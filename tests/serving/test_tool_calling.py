"""Tool calls in replies, as OpenAI clients read them: the OpenAI SDK parses our `tool_calls`, and its streaming
helper (`client.chat.completions.stream`, ChatCompletionStreamState) rebuilds from our deltas exactly the
non-streamed message.

The model here is scripted (the one stand-in in this file): a backend that answers every request with one
fixed output, token by token, so each family's output format (which the demo model does not write) reaches
the real HTTP front, the real tokenizer, the real chat templates and the real parsers. The demo model's own
tool calls are tested end to end in test_tool_calling_demo.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread
from pytest_nemo_eval.checkpoint.tokenizer import HFTokenizer
from pytest_nemo_eval.serving.generation import GenerationDelta, GenerationResult
from pytest_nemo_eval.serving.openai_api import ServedModel, create_app

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "chat_templates"
SHARED_TOKENIZER = Path(__file__).resolve().parents[3] / "shared" / "nemo-written" / "llama31-tiny" / "hf"
ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
MESSAGES = [{"role": "user", "content": "What is 2 plus 3, and the weather in Paris?"}]

# (template, what the model writes, expected content, expected calls)
FAMILIES = {
    "hermes": ("Qwen-Qwen2.5-7B-Instruct",
               'Let me check.<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>\n'
               '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
               "Let me check.", [("add", {"a": 2, "b": 3}), ("get_weather", {"city": "Paris"})]),
    "llama3_json": ("meta-llama-Llama-3.1-8B-Instruct",
                    '{"name": "add", "parameters": {"a": 2, "b": 3}}; {"name": "get_weather", "parameters": '
                    '{"city": "Paris"}}',
                    None, [("add", {"a": 2, "b": 3}), ("get_weather", {"city": "Paris"})]),
    "mistral": ("mistralai-Mistral-Nemo-Instruct-2407",
                '[TOOL_CALLS][{"name": "add", "arguments": {"a": 2, "b": 3}}, {"name": "get_weather", '
                '"arguments": {"city": "Paris"}}]',
                None, [("add", {"a": 2, "b": 3}), ("get_weather", {"city": "Paris"})]),
    # Llama 3.2 with the parser named (its own template asks for JSON)
    "pythonic": ("meta-llama-Llama-3.2-3B-Instruct", "[add(a=2, b=3), get_weather(city='Paris')]",
                 None, [("add", {"a": 2, "b": 3}), ("get_weather", {"city": "Paris"})]),
}


class ScriptedModel:
    """Answers every request with `output` (then EOS), streamed one token per delta; records the prompts."""

    def __init__(self, tokenizer: HFTokenizer) -> None:
        self.tokenizer = tokenizer
        self.output = ""
        self.finish = "stop"
        self.prompts: list[list[int]] = []

    def _ids(self) -> list[int]:
        ids = self.tokenizer.encode(self.output)
        return ids + [self.tokenizer.eos_id] if self.finish == "stop" else ids

    def generate(self, requests):
        self.prompts += [r.prompt_ids for r in requests]
        return [GenerationResult(output_ids=self._ids(), text=self.output, finish_reason=self.finish)
                for _ in requests]

    def stream(self, request):
        self.prompts.append(request.prompt_ids)
        ids, sent = self._ids(), ""
        for i in range(len(ids)):
            text = self.tokenizer.decode(ids[: i + 1])
            yield GenerationDelta(output_ids=[ids[i]], text=text[len(sent):],
                                  finish_reason=self.finish if i == len(ids) - 1 else None)
            sent = text


@pytest.fixture(scope="module")
def front():
    """One real HTTP front per template over the scripted model: {parser name: (client, model)}."""
    if not (SHARED_TOKENIZER / "tokenizer.json").is_file():
        pytest.skip(f"the NeMo-written test tokenizer is not at {SHARED_TOKENIZER} (shared/ beside the clone)")
    fronts, servers = {}, []
    for parser, (template, *_rest) in FAMILIES.items():
        tokenizer = HFTokenizer(SHARED_TOKENIZER, {"chat_template": (TEMPLATES / f"{template}.jinja").read_text()})
        model = ScriptedModel(tokenizer)
        # Llama 3.2's own template asks for JSON; the pythonic form is chosen by name, as --nemo-tool-parser does
        served = ServedModel(model_id=f"scripted-{parser}", tokenizer=tokenizer, max_context=4096,
                             generate=model.generate, stream=model.stream,
                             tool_parser_name="pythonic" if parser == "pythonic" else None)
        server = ServerThread(create_app(served), host="127.0.0.1", port=0, threads=4, name=f"front-{parser}").start()
        servers.append(server)
        fronts[parser] = (openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0), model)
    yield fronts
    for server in servers:
        server.stop()


def _calls(message) -> list[tuple[str, dict]]:
    return [(call.function.name, json.loads(call.function.arguments)) for call in message.tool_calls or []]


@pytest.mark.parametrize("parser", sorted(FAMILIES))
def test_each_family_s_calls_reach_the_sdk_as_typed_tool_calls(front, parser):
    client, model = front[parser]
    _template, model.output, content, calls = FAMILIES[parser]
    model.finish = "stop"
    reply = client.chat.completions.create(model="m", messages=MESSAGES, tools=[ADD, WEATHER], max_tokens=200)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == content
    assert _calls(choice.message) == calls
    for call in choice.message.tool_calls:
        assert call.type == "function"
        if parser == "mistral":  # Mistral's template refuses ids that are not 9 alphanumerics
            assert len(call.id) == 9 and call.id.isalnum()
        else:
            assert call.id.startswith("chatcmpl-tool-")
    assert len({call.id for call in choice.message.tool_calls}) == len(calls)


@pytest.mark.parametrize("parser", sorted(FAMILIES))
def test_the_sdk_stream_helper_rebuilds_the_non_streamed_message(front, parser):
    client, model = front[parser]
    _template, model.output, content, calls = FAMILIES[parser]
    model.finish = "stop"
    plain = client.chat.completions.create(model="m", messages=MESSAGES, tools=[ADD, WEATHER], max_tokens=200)
    with client.chat.completions.stream(model="m", messages=MESSAGES, tools=[ADD, WEATHER], max_tokens=200) as stream:
        chunks = list(stream)
        final = stream.get_final_completion()
    streamed = final.choices[0]
    assert streamed.finish_reason == plain.choices[0].finish_reason == "tool_calls"
    assert (streamed.message.content or None) == plain.choices[0].message.content
    assert _calls(streamed.message) == _calls(plain.choices[0].message) == calls
    # vLLM's order: for each call, a delta with index, id, type and name, then its arguments
    tool_deltas = [c.chunk.choices[0].delta.tool_calls[0] for c in chunks
                   if c.type == "chunk" and c.chunk.choices and c.chunk.choices[0].delta.tool_calls]
    assert [(d.index, d.id is not None, d.function.name) for d in tool_deltas[::2]] == \
        [(i, True, name) for i, (name, _) in enumerate(calls)]
    assert [json.loads(d.function.arguments) for d in tool_deltas[1::2]] == [args for _, args in calls]


def test_an_unfinished_call_is_raw_content_with_the_reason(front):
    """Never a dropped call: the raw text is the content, stop_reason says why, finish_reason what stopped it."""
    client, model = front["hermes"]
    model.output, model.finish = '<tool_call>\n{"name": "add", "arguments": {"a": 2', "length"
    reply = client.chat.completions.create(model="m", messages=MESSAGES, tools=[ADD], max_tokens=200)
    choice = reply.choices[0]
    assert choice.message.content == model.output and not choice.message.tool_calls
    assert choice.finish_reason == "length" and choice.model_extra["stop_reason"] == "tool_call_incomplete"
    with client.chat.completions.stream(model="m", messages=MESSAGES, tools=[ADD], max_tokens=200) as stream:
        with pytest.raises(openai.LengthFinishReasonError) as cut:  # the helper's own word for a cut-off reply
            stream.get_final_completion()
    final = cut.value.completion
    assert final.choices[0].message.content == model.output and final.choices[0].finish_reason == "length"


def test_parallel_tool_calls_false_keeps_the_first_call(front):
    client, model = front["hermes"]
    _template, model.output, _content, calls = FAMILIES["hermes"]
    model.finish = "stop"
    reply = client.chat.completions.create(model="m", messages=MESSAGES, tools=[ADD, WEATHER], max_tokens=200,
                                           parallel_tool_calls=False)
    assert _calls(reply.choices[0].message) == calls[:1]


def test_tool_choice_none_renders_the_tools_and_parses_nothing(front):
    """The tools and the earlier calls are in the prompt (as vLLM renders them), the output stays text."""
    client, model = front["hermes"]
    _template, model.output, _content, _calls_ = FAMILIES["hermes"]
    model.finish = "stop"
    conversation = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "5"}]
    reply = client.chat.completions.create(model="m", messages=conversation, tools=[ADD], tool_choice="none",
                                           max_tokens=200)
    assert reply.choices[0].message.content == model.output and not reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "stop"
    without_tools = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=200)
    assert reply.usage.prompt_tokens > without_tools.usage.prompt_tokens + 50
    prompt = model.tokenizer.decode(model.prompts[-2])
    assert '"name": "add"' in prompt and "<tool_response>\n5\n</tool_response>" in prompt


def test_auto_without_a_parser_is_refused_naming_the_option():
    """A template with no known tool format and no --nemo-tool-parser: vLLM's refusal of auto tool choice."""
    if not (SHARED_TOKENIZER / "tokenizer.json").is_file():
        pytest.skip("the NeMo-written test tokenizer is not in shared/")
    template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}{% if tools %}{{ tools | tojson }}{% endif %}")
    tokenizer = HFTokenizer(SHARED_TOKENIZER, {"chat_template": template})
    model = ScriptedModel(tokenizer)
    served = ServedModel(model_id="m", tokenizer=tokenizer, max_context=4096, generate=model.generate)
    server = ServerThread(create_app(served), host="127.0.0.1", port=0, threads=2, name="front-noparser").start()
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="m", messages=MESSAGES, tools=[ADD], max_tokens=5)
        assert "--nemo-tool-parser" in str(caught.value) and caught.value.body["param"] == "tool_choice"
    finally:
        server.stop()
