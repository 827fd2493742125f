"""Every bad request is an OpenAI-shaped 4xx naming what is wrong; the server keeps serving."""

from __future__ import annotations

import pytest

from pytest_nemo_eval.adapters import ProxyServer

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


ADD_TOOL = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}
USER = [{"role": "user", "content": "What is 12+34?"}]


@pytest.mark.parametrize("payload, param, needle", [
    ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "tools", "name"),
    ({"tools": [{"type": "function", "function": {"name": "add", "parameters": {"type": "objekt"}}}]},
     "tools", "not a valid JSON schema"),
    ({"tools": [ADD_TOOL], "tool_choice": {"type": "function", "function": {"name": "sub"}}}, "tool_choice", "'sub'"),
    ({"tool_choice": "required"}, "tool_choice", "`tools` must be set"),
    ({"tool_choice": "sometimes", "tools": [ADD_TOOL]}, "tool_choice", "tool_choice"),
    ({"messages": [*USER, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{a: 1"}}]}]},
     "messages", "arguments"),
    ({"messages": [{"role": "user", "content": "hi", "audio": {"id": "x"}}]}, "messages", "`audio`"),
    ({"messages": [{"role": "tool", "content": "5"}]}, "messages", "tool_call_id"),
    ({"continue_final_message": True}, "continue_final_message", "add_generation_prompt"),
    ({"chat_template_kwargs": {"add_generation_prompt": False}}, "chat_template_kwargs", "add_generation_prompt"),
    ({"response_format": {"type": "json_schema"}}, "response_format", "json_schema"),
    ({"response_format": {"type": "json_object"}, "guided_regex": "[0-9]+"}, "response_format", "both"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages", "image_url"),
])
def test_malformed_chat_fields_are_400_naming_the_field(api, payload, param, needle):
    """Every field the chat route accepts takes effect or is refused by name: never a silent drop, never a 500."""
    status, body = api.post("/v1/chat/completions", {"messages": USER, "max_tokens": 4, **payload})
    assert status == 400, body
    assert body["error"]["param"] == param, body
    assert needle in body["error"]["message"], body


def test_unknown_top_level_fields_are_ignored_as_vllm_does_and_reported(api, tmp_path):
    status, body = api.post("/v1/chat/completions", {"messages": USER, "max_tokens": 4, "frobnicate": 1})
    assert status == 200, body
    reply = api.session.post(api.base_url + "/v1/completions", json={"prompt": "1+1=", "max_tokens": 2,
                                                                     "frobnicate": 1, "zest": None}, timeout=60)
    assert reply.status_code == 200 and reply.headers["X-Nemo-Ignored-Fields"] == "frobnicate,zest"
    status, health = api.get("/v1/health")
    assert {"frobnicate", "zest"} <= set(health["ignored_request_fields"])
    # the proxy counts such requests (a JUnit property) and keeps the names
    with ProxyServer(api.base_url, log_dir=tmp_path / "proxy") as proxy:
        for _ in range(2):
            reply = api.session.post(proxy.url + "/v1/completions", json={"prompt": "1+1=", "max_tokens": 2,
                                                                          "frobnicate": 1}, timeout=60)
            assert reply.status_code == 200
        stats = proxy.stats()
    assert stats.ignored_field_requests == 2 and stats.ignored_fields == ["frobnicate"]


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
