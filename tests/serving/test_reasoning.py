"""Reasoning split on the server, as vLLM's reasoning parsers do, read by the OpenAI SDK.

The model here is scripted (tests/serving/test_tool_calling.ScriptedModel: one fixed output, token by token),
so each case's output reaches the real HTTP front, the real Qwen3 chat template and the real parsers; the
demo's own thinking is tested on the demo. Oracles: the OpenAI SDK's parsing and its streaming helper
(ChatCompletionStreamState), and transformers' tokenizer for the reasoning token count.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread
from pytest_nemo_eval.checkpoint.tokenizer import HFTokenizer
from pytest_nemo_eval.serving.openai_api import ServedModel, create_app

from .test_tool_calling import ADD, SHARED_TOKENIZER, TEMPLATES, ScriptedModel

QUESTION = [{"role": "user", "content": "What is 12+34?"}]


@pytest.fixture(scope="module", params=["qwen3", "deepseek_r1"])
def front(request):
    """A real HTTP front with Qwen3's template; the reasoning parser chosen from it (qwen3) or named."""
    if not (SHARED_TOKENIZER / "tokenizer.json").is_file():
        pytest.skip(f"the NeMo-written test tokenizer is not at {SHARED_TOKENIZER}")
    tokenizer = HFTokenizer(SHARED_TOKENIZER, {"chat_template": (TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text()})
    model = ScriptedModel(tokenizer)
    served = ServedModel(model_id="scripted", tokenizer=tokenizer, max_context=4096, generate=model.generate,
                         stream=model.stream, reasoning_parser_name=None if request.param == "qwen3" else request.param)
    server = ServerThread(create_app(served), host="127.0.0.1", port=0, threads=4, name="front-think").start()
    yield openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0), model, request.param
    server.stop()


def _ask(client, **extra):
    return client.chat.completions.create(model="m", messages=QUESTION, max_tokens=100, **extra)


def _stream(client, **extra):
    with client.chat.completions.stream(model="m", messages=QUESTION, max_tokens=100, **extra) as stream:
        events = [event for event in stream if event.type == "chunk"]
        final = stream.get_final_completion()
    deltas = [e.chunk.choices[0].delta for e in events if e.chunk.choices]
    return final, deltas


def test_the_thought_is_split_from_the_answer_streamed_and_not(front):
    client, model, _parser = front
    model.output, model.finish = "<think>\n12+34\n</think>\n\n46", "stop"
    reply = _ask(client, stream_options=None)
    message = reply.choices[0].message
    assert message.content == "\n\n46" and message.reasoning_content == "\n12+34\n" == message.reasoning
    thought_tokens = len(model.tokenizer.encode("<think>\n12+34\n</think>"))
    assert reply.usage.completion_tokens_details.reasoning_tokens == thought_tokens
    final, deltas = _stream(client)
    assert final.choices[0].message.content == message.content
    assert final.choices[0].message.reasoning_content == message.reasoning_content
    kinds = [("reasoning" if getattr(d, "reasoning_content", None) else "content")
             for d in deltas if getattr(d, "reasoning_content", None) or d.content]
    assert kinds == sorted(kinds, key=lambda kind: kind != "reasoning") and "reasoning" in kinds  # thought first


def test_include_reasoning_false_leaves_the_thought_out(front):
    client, model, _parser = front
    model.output, model.finish = "<think>12+34</think>46", "stop"
    reply = _ask(client, extra_body={"include_reasoning": False})
    assert reply.choices[0].message.content == "46"
    assert "reasoning_content" not in (reply.choices[0].message.model_extra or {})
    final, deltas = _stream(client, extra_body={"include_reasoning": False})
    assert final.choices[0].message.content == "46" and not any(getattr(d, "reasoning_content", None) for d in deltas)


def test_a_reply_cut_off_in_its_thought_has_no_answer(front):
    """lm-eval #3382: a half-thought scored as the answer. Here the content is empty and finish_reason says length."""
    client, model, _parser = front
    model.output, model.finish = "<think>\nLet me add 12 and 3", "length"
    reply = _ask(client)
    choice = reply.choices[0]
    assert choice.finish_reason == "length" and choice.message.content == ""
    assert choice.message.reasoning_content == "\nLet me add 12 and 3"
    assert reply.usage.completion_tokens_details.reasoning_tokens == reply.usage.completion_tokens
    with pytest.raises(openai.LengthFinishReasonError) as cut:
        _stream(client)
    assert (cut.value.completion.choices[0].message.content or "") == ""


def test_thinking_off_is_all_answer_for_qwen3(front):
    client, model, parser = front
    model.output, model.finish = "46", "stop"
    message = _ask(client, extra_body={"chat_template_kwargs": {"enable_thinking": False}}).choices[0].message
    if parser == "qwen3":
        assert message.content == "46" and "reasoning_content" not in (message.model_extra or {})
    else:  # deepseek_r1: everything before </think> is thought, and there is none: a thought cut off
        assert message.content == "" and message.reasoning_content == "46"
    prompt = model.tokenizer.decode(model.prompts[-1])
    assert prompt.endswith("<think>\n\n</think>\n\n")  # enable_thinking reached Qwen3's template


def test_tool_calls_are_parsed_from_the_answer_only(front):
    client, model, _parser = front
    model.output = ('<think>I could write <tool_call>{"name": "sub", "arguments": {}}</tool_call> but no.</think>'
                    '<tool_call>\n{"name": "add", "arguments": {"a": 12, "b": 34}}\n</tool_call>')
    model.finish = "stop"
    reply = client.chat.completions.create(model="m", messages=QUESTION, tools=[ADD], max_tokens=100)
    message = reply.choices[0].message
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == \
        [("add", {"a": 12, "b": 34})]
    assert "sub" in message.reasoning_content and reply.choices[0].finish_reason == "tool_calls"
    final, _deltas = _stream(client, tools=[ADD])
    assert [c.function.name for c in final.choices[0].message.tool_calls] == ["add"]
    assert final.choices[0].message.reasoning_content == message.reasoning_content


def test_the_parser_is_chosen_from_real_templates():
    from pytest_nemo_eval.serving.reasoning_parsers import choose_reasoning_parser

    qwen3 = (TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text()
    assert choose_reasoning_parser(None, qwen3).name == "qwen3"
    for name in ("Qwen-Qwen2.5-7B-Instruct", "meta-llama-Llama-3.1-8B-Instruct"):
        assert choose_reasoning_parser(None, (TEMPLATES / f"{name}.jinja").read_text()) is None
    assert choose_reasoning_parser("none" if False else "deepseek_r1", qwen3).name == "deepseek_r1"
    with pytest.raises(ValueError, match="qwen3"):
        choose_reasoning_parser("qwen4", qwen3)
    assert Path  # (imported for the fixtures' paths)


def test_our_own_reply_sent_back_is_accepted(front):
    """Clients send the assistant message back as they got it (reasoning_content and reasoning both set)."""
    client, model, _parser = front
    model.output, model.finish = "<think>12+34</think>46", "stop"
    message = _ask(client).choices[0].message.model_dump(exclude_none=True)
    assert message["reasoning"] == message["reasoning_content"] == "12+34"
    again = client.chat.completions.create(model="m", messages=[*QUESTION, message, {"role": "user", "content": "Sure?"}],
                                           max_tokens=100)
    assert again.choices[0].message.content == "46"
    with pytest.raises(openai.BadRequestError, match="reasoning"):
        client.chat.completions.create(model="m", max_tokens=10, messages=[
            *QUESTION, {**message, "reasoning": "something else"}, {"role": "user", "content": "Sure?"}])
