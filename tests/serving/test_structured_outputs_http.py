"""Structured outputs through the HTTP front, as clients ask for them: OpenAI's `response_format` (JSON mode and
JSON schema, through the OpenAI SDK), vLLM's `guided_*` fields and its newer `structured_outputs`. Every reply
is checked by jsonschema / re (not our code), including replies to prompts the demo cannot answer; the
engine-level tests are in test_structured_outputs.py."""

from __future__ import annotations

import json
import re

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.serving_backends("pytriton", "ray")

PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1, "maxItems": 3}},
    "required": ["name", "age", "tags"], "additionalProperties": False}
PROMPTS = ["What is 12+34?", "rev hello=", "Describe a person.", "Ünïcödé? 你好"]


@pytest.fixture(scope="module")
def client(served_deployment) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served_deployment.url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_json_schema_replies_validate(client, prompt):
    reply = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": prompt}], max_tokens=120, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content), PERSON)


def test_json_mode_and_streamed_json_schema(client):
    """JSON mode bounds no string, so a reply may run out of tokens: then it says "length", never "stop"."""
    for prompt in PROMPTS:
        reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": prompt}],
                                               max_tokens=200, response_format={"type": "json_object"})
        choice = reply.choices[0]
        assert choice.message.content.startswith("{")
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
        else:
            assert choice.finish_reason == "length" and reply.usage.completion_tokens == 200
    stream = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "What is 1+2?"}], max_tokens=120, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    jsonschema.validate(json.loads(text), PERSON)


def test_vllm_guided_fields_and_structured_outputs(client):
    def ask(**extra) -> str:
        reply = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "rev abc="}],
                                               max_tokens=120, temperature=0, extra_body=extra)
        return reply.choices[0].message.content

    assert ask(guided_choice=["yes", "no", "it's \"maybe\""]) in ("yes", "no", "it's \"maybe\"")
    assert re.fullmatch(r"[0-9]{2,4}-[a-z]+", ask(guided_regex=r"[0-9]{2,4}-[a-z]+"))
    jsonschema.validate(json.loads(ask(guided_json=PERSON)), PERSON)
    jsonschema.validate(json.loads(ask(structured_outputs={"json": PERSON})), PERSON)
    assert ask(structured_outputs={"choice": ["left", "right"]}) in ("left", "right")


def test_completions_take_the_same_constraints(client):
    """vLLM's completions route takes guided_* and response_format too; so does ours (never ignored)."""
    reply = client.completions.create(model="demo", prompt="1+1=", max_tokens=120, temperature=0,
                                      extra_body={"guided_json": PERSON})
    jsonschema.validate(json.loads(reply.choices[0].text), PERSON)
    reply = client.completions.create(model="demo", prompt="rev abc=", max_tokens=8,
                                      extra_body={"guided_choice": ["cba", "abc"]})
    assert reply.choices[0].text in ("cba", "abc")


def test_an_uncompilable_schema_is_a_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}], max_tokens=10,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}})
    assert "missing" in str(caught.value) or "$ref" in str(caught.value)
