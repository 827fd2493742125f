"""Every bad request is an OpenAI-shaped 4xx naming what is wrong; the server keeps serving."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.serving_backends("pytriton", "ray")  # the same answers from either backend


@pytest.mark.parametrize(
    ("payload", "param", "needle"),
    [
        ({"max_tokens": 3}, "prompt", "prompt"),
        ({"prompt": "1+1=", "max_tokens": -1}, "max_tokens", "greater than or equal to 0"),
        ({"prompt": "1+1=", "n": 0}, "n", "greater than or equal to 1"),
        ({"prompt": "1+1=", "n": 1000}, "n", "less than or equal to 128"),
        ({"prompt": "1+1=", "temperature": -0.5}, "temperature", "temperature"),
        ({"prompt": "1+1=", "top_p": 0}, "top_p", "top_p"),
        ({"prompt": "1+1=", "logprobs": 99}, "logprobs", "logprobs"),
        ({"prompt": [], "max_tokens": 1}, "prompt", "empty"),
        ({"prompt": [10**9], "max_tokens": 1}, "prompt", "outside the vocabulary"),
        ({"prompt": "1+1=", "stream_options": {"include_usage": True}}, None, "stream_options is only allowed"),
    ],
)
def test_invalid_completion_parameters_are_400(api, payload, param, needle):
    status, body = api.post("/v1/completions", payload)
    assert status == 400, body
    error = body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert needle in error["message"]


@pytest.mark.parametrize(
    ("path", "payload", "param", "needle"),
    [
        ("/tokenize", {"prompt": ["1+1="]}, "prompt", "valid string"),
        ("/tokenize", {"prompt": 12}, "prompt", "valid string"),
        ("/tokenize", {}, None, "exactly one of `prompt`"),
        ("/detokenize", {"tokens": [5, "7"]}, "tokens", "`tokens.1`"),
        ("/detokenize", {"tokens": "5 7"}, "tokens", "valid list"),
        ("/detokenize", {"tokens": [5, 10**6]}, "tokens", "outside the vocabulary"),
        ("/detokenize", {"tokens": [-1]}, "tokens", "outside the vocabulary"),
    ],
)
def test_tokenizer_routes_refuse_bad_input_naming_the_field(api, path, payload, param, needle):
    status, body = api.post(path, payload)
    assert status == 400, body
    assert body["error"]["param"] == param
    assert needle in body["error"]["message"], body


def test_prompt_longer_than_the_context_is_400(api):
    max_context = api.get("/v1/models")[1]["data"][0]["max_model_len"]
    status, body = api.post("/v1/completions", {"prompt": "1" * (max_context + 5), "max_tokens": 1})
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"
    assert str(max_context) in body["error"]["message"]


def test_max_tokens_overflowing_the_context_is_400(api):
    max_context = api.get("/v1/models")[1]["data"][0]["max_model_len"]
    status, body = api.post("/v1/completions", {"prompt": "1+1=", "max_tokens": max_context})
    assert status == 400
    assert body["error"]["param"] == "max_tokens"
    assert f"at most {max_context - 4}" in body["error"]["message"]


def test_unparseable_json_is_400(api):
    status, body = api.post("/v1/completions", data='{"prompt": "1+1=",')
    assert status == 400
    assert body["error"]["code"] == "invalid_json"


def test_chat_without_messages_is_400(api):
    status, body = api.post("/v1/chat/completions", {"messages": []})
    assert status == 400
    assert body["error"]["param"] == "messages"


def test_chat_offering_tools_is_400_naming_the_prompting_way(api):
    """No native function calling: tools would be dropped silently (a function-calling benchmark scoring a model
    that never saw the functions), so they are refused unless tool_choice is "none"."""
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}
    messages = [{"role": "user", "content": "What is 12+34?"}]
    for extra in ({}, {"tool_choice": "auto"}, {"stream": True}):
        status, body = api.post("/v1/chat/completions", {"messages": messages, "tools": [tool], "max_tokens": 4,
                                                         **extra})
        assert status == 400, body
        assert body["error"]["param"] == "tools" and body["error"]["code"] == "tools_not_supported"
        assert "bfclv2_ast_prompting" in body["error"]["message"]
    status, body = api.post("/v1/chat/completions", {"messages": messages, "tools": [tool], "tool_choice": "none",
                                                     "max_tokens": 8})
    assert status == 200 and body["choices"][0]["message"]["content"].strip().isdigit(), body


def test_unknown_route_is_404_in_openai_shape(api):
    status, body = api.post("/v1/embeddings", {"input": "x"})
    assert status == 404
    assert "/v1/embeddings" in body["error"]["message"]


def test_server_still_answers_after_bad_requests(api):
    assert api.complete(prompt="10+10=", max_tokens=3, stop=";")["choices"][0]["text"].isdigit()


def test_wrong_method_is_405_in_openai_shape(api):
    status, body = api.get("/v1/completions")
    assert status == 405
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "method_not_allowed"
