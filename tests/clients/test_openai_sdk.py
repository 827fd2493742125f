"""The official OpenAI Python SDK against the deployment: every parameter we support, typed objects, streaming.

The SDK validates every response into its pydantic types (Completion, ChatCompletion, their chunks);
a field we shape wrongly fails here the way it would fail in a user's program.
"""

from __future__ import annotations

import math

import openai
import pytest

pytestmark = pytest.mark.serving_backends("pytriton", "ray")  # the same answers from either backend

PROMPTS = ["12+34=", "57+18=", "rev abc=", "90+9="]


@pytest.fixture(scope="module")
def client(base_url) -> openai.OpenAI:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120) as sdk:
        yield sdk


def test_models_list_parses(client, model_id):
    assert [m.id for m in client.models.list()] == [model_id]


def test_completion_with_every_supported_parameter_parses(client, model_id):
    reply = client.completions.create(
        model=model_id, prompt=["12+34=", "rev dog="], max_tokens=6, temperature=0.7, top_p=0.9, seed=5,
        stop=[";"], logprobs=2, echo=True, n=2, extra_body={"top_k": 5, "ignore_eos": False},
    )
    assert isinstance(reply, openai.types.Completion)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    for choice, prompt in zip(reply.choices, ["12+34=", "12+34=", "rev dog=", "rev dog="]):
        assert choice.text.startswith(prompt)  # echo
        assert choice.finish_reason in ("stop", "length")
        lp = choice.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
        assert lp.token_logprobs[0] is None and all(isinstance(x, float) for x in lp.token_logprobs[1:])
        assert all(len(top) <= 2 for top in lp.top_logprobs[1:])
        for token, offset in zip(lp.tokens, lp.text_offset):  # offsets index the returned text
            assert choice.text[offset:].startswith(token) or token == "<|endoftext|>"
    assert reply.usage.prompt_tokens == 6 + 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    again = client.completions.create(model=model_id, prompt=["12+34=", "rev dog="], max_tokens=6, temperature=0.7,
                                      top_p=0.9, seed=5, stop=[";"], n=2, extra_body={"top_k": 5})
    assert [c.text for c in again.choices] == [c.text[len(p):] for c, p in
                                                zip(reply.choices, ["12+34="] * 2 + ["rev dog="] * 2)]


def test_chat_completion_with_every_supported_parameter_parses(client, model_id):
    reply = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "What is 23+45?"}], max_completion_tokens=6,
        temperature=0.0, top_p=1.0, seed=3, stop=["\n"], logprobs=True, top_logprobs=3, n=2,
    )
    assert isinstance(reply, openai.types.chat.ChatCompletion)
    assert [c.index for c in reply.choices] == [0, 1]
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "68"
    assert choice.finish_reason == "stop"
    entries = choice.logprobs.content
    assert [e.token for e in entries][:2] == ["6", "8"]
    assert entries[-1].token == "<|endoftext|>"  # the EOS the answer ended on has its entry, as in vLLM
    assert reply.usage.completion_tokens == 2 * len(entries)  # two choices, EOS counted
    for entry in entries:
        assert len(entry.top_logprobs) == 3 and max(t.logprob for t in entry.top_logprobs) == entry.logprob
    assert reply.choices[1].message.content == "68"


def test_bad_parameters_raise_the_sdks_bad_request_error(client, model_id):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=model_id, prompt="1+1=", max_tokens=3, temperature=-1)
    assert caught.value.status_code == 400 and "temperature" in str(caught.value)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_completion_stream_assembles_to_the_non_streamed_answer(client, model_id, prompt):
    options = {"model": model_id, "prompt": prompt, "max_tokens": 10, "temperature": 0.0, "logprobs": 2}
    whole = client.completions.create(**options)
    chunks = list(client.completions.create(**options, stream=True, stream_options={"include_usage": True}))
    assert all(isinstance(c, openai.types.Completion) for c in chunks)
    pieces = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in pieces) == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in pieces][-1] == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in pieces[:-1])
    streamed = [(t, lp, off) for c in pieces for t, lp, off in
                zip(c.choices[0].logprobs.tokens, c.choices[0].logprobs.token_logprobs, c.choices[0].logprobs.text_offset)]
    expected = list(zip(whole.choices[0].logprobs.tokens, whole.choices[0].logprobs.token_logprobs,
                        whole.choices[0].logprobs.text_offset))
    assert [(t, off) for t, _, off in streamed] == [(t, off) for t, _, off in expected]
    assert all(math.isclose(a, b, abs_tol=1e-5) for (_, a, _), (_, b, _) in zip(streamed, expected))
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage  # include_usage: a last usage chunk
    assert len(pieces) >= 2  # token by token, not one chunk at the end


def test_echo_stream_starts_with_the_prompt_and_its_logprobs(client, model_id):
    options = {"model": model_id, "prompt": "<|user|>What is 47+38?\n<|assistant|>", "max_tokens": 4, "echo": True,
               "logprobs": 1}
    whole = client.completions.create(**options)
    pieces = [c.choices[0] for c in client.completions.create(**options, stream=True) if c.choices]
    assert "".join(p.text for p in pieces) == whole.choices[0].text
    assert [t for p in pieces for t in p.logprobs.tokens] == whole.choices[0].logprobs.tokens
    assert [o for p in pieces for o in p.logprobs.text_offset] == whole.choices[0].logprobs.text_offset
    assert pieces[0].logprobs.token_logprobs[0] is None  # the prompt's first token, as in the whole answer


def test_completion_stream_with_stop_strings_and_n_choices(client, model_id):
    options = {"model": model_id, "prompt": ["12+34=", "rev abc="], "max_tokens": 10, "temperature": 0.9,
               "seed": 11, "n": 2, "stop": ["4;", "b"]}
    whole = client.completions.create(**options)
    texts = {i: "" for i in range(4)}
    finish = {}
    for chunk in client.completions.create(**options, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert [texts[i] for i in range(4)] == [c.text for c in whole.choices]
    assert [finish[i] for i in range(4)] == [c.finish_reason for c in whole.choices]


def test_chat_stream_assembles_to_the_non_streamed_answer(client, model_id):
    options = {"model": model_id, "messages": [{"role": "user", "content": "What is 31+26?"}], "max_tokens": 8,
               "logprobs": True, "top_logprobs": 1}
    whole = client.chat.completions.create(**options)
    chunks = list(client.chat.completions.create(**options, stream=True, stream_options={"include_usage": True}))
    assert all(isinstance(c, openai.types.chat.ChatCompletionChunk) for c in chunks)
    pieces = [c for c in chunks if c.choices]
    assert pieces[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in pieces) == whole.choices[0].message.content
    assert pieces[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    streamed = [e.token for c in pieces for e in (c.choices[0].logprobs.content or [])]
    assert streamed == [e.token for e in whole.choices[0].logprobs.content]
    assert chunks[-1].usage == whole.usage


def test_chat_stream_with_n_sampled_choices_equals_the_non_streamed_choices(client, model_id):
    options = {"model": model_id, "messages": [{"role": "user", "content": "What is 12+9?"}], "max_tokens": 6,
               "temperature": 1.5, "seed": 21, "n": 3}
    whole = client.chat.completions.create(**options)
    texts = {i: "" for i in range(3)}
    for chunk in client.chat.completions.create(**options, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert [texts[i] for i in range(3)] == [c.message.content for c in whole.choices]


def test_stream_helper_of_the_sdk_collects_the_chat_answer(client, model_id):
    """The SDK's higher-level streaming helper (chat.completions.stream) accumulates our chunks itself."""
    messages = [{"role": "user", "content": "What is 40+2?"}]
    whole = client.chat.completions.create(model=model_id, messages=messages, max_tokens=8)
    with client.chat.completions.stream(model=model_id, messages=messages, max_tokens=8) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == whole.choices[0].message.content
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason
