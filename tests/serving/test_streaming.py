"""stream=true on the wire: SSE framing, refusals before the first byte, client disconnects, in-stream errors.

(The OpenAI SDK's view of the same streams is in tests/clients/test_openai_sdk.py.)
"""

from __future__ import annotations

import json
import time

import requests

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread
from pytest_nemo_eval.serving.engine import GenerationDelta, TokenLogprob
from pytest_nemo_eval.serving.openai_api import ServedModel, create_app
from pytest_nemo_eval.serving.triton_client import GenerationFailed


def _events(reply: requests.Response) -> list[str]:
    """The raw `data:` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in reply.text.split("\n\n") if line.startswith("data: ")]


def test_sse_framing_is_openais(demo_deployment):
    reply = requests.post(f"{demo_deployment.url}/v1/completions", timeout=60, json={
        "prompt": "12+34=", "max_tokens": 6, "stream": True, "stream_options": {"include_usage": True}})
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert reply.text.endswith("data: [DONE]\n\n")
    events = _events(reply)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "text_completion" for c in chunks)
    assert all(c["usage"] is None for c in chunks[:-1])  # include_usage: null until the last chunk
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1


def test_a_request_refused_before_streaming_is_an_ordinary_400(demo_deployment):
    reply = requests.post(f"{demo_deployment.url}/v1/completions", timeout=60,
                          json={"prompt": "1+1=", "max_tokens": 10_000, "stream": True})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "max_tokens"


def test_a_client_that_disconnects_mid_stream_frees_its_engine_slot(demo_deployment):
    url = demo_deployment.url
    before = requests.get(f"{url}/v1/health", timeout=30).json()["engine"]
    reply = requests.post(f"{url}/v1/completions", stream=True, timeout=60, json={
        "prompt": "rev abc=", "max_tokens": 115, "ignore_eos": True, "stream": True})
    first = next(reply.iter_lines())
    assert first.startswith(b"data: {")
    reply.close()  # the client goes away after its first token
    deadline = time.monotonic() + 30
    while True:
        engine = requests.get(f"{url}/v1/health", timeout=30).json()["engine"]
        if engine["cancelled"] > before["cancelled"] and engine["active_rows"] == 0:
            break
        assert time.monotonic() < deadline, f"the abandoned request still holds a slot: {engine}"
        time.sleep(0.02)
    assert engine["cancelled"] == before["cancelled"] + 1
    # retired well before its 115 tokens: the engine stopped decoding it
    assert engine["decode_steps"] - before["decode_steps"] < 115


def test_a_failure_after_the_first_byte_is_an_in_stream_error_event_then_done(demo_deployment):
    """The only injected fault in this file: a backend that fails after two tokens (no real deployment
    fails on demand mid-stream). The front must report it in the stream, then close it."""
    import openai
    from pytest_nemo_eval.checkpoint.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(demo_deployment.settings.checkpoint / "context")

    def failing_stream(request):
        for token in tokenizer.encode("42"):
            yield GenerationDelta(output_ids=[token], text=tokenizer.decode([token]), logprobs=[
                TokenLogprob(token_id=token, token=tokenizer.token_str(token), logprob=-0.1, top={})])
        raise GenerationFailed("the engine lost this request", "server_error")

    cancelled: list[str] = []
    served = ServedModel(model_id="broken", tokenizer=tokenizer, max_context=128, generate=None,
                         stream=failing_stream, cancel=cancelled.append)
    server = ServerThread(create_app(served), host="127.0.0.1", port=0, threads=4, name="broken-front").start()
    try:
        reply = requests.post(f"{server.url}/v1/completions", timeout=30,
                              json={"prompt": "1+1=", "max_tokens": 5, "stream": True})
        assert reply.status_code == 200  # the headers went out before the failure
        events = _events(reply)
        assert [json.loads(e)["choices"][0]["text"] for e in events[:2]] == ["4", "2"]
        error = json.loads(events[2])["error"]
        assert error["type"] == "server_error" and "the engine lost this request" in error["message"]
        assert events[3:] == ["[DONE]"]
        # the OpenAI SDK raises it as an APIError while iterating, after the chunks before it
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        received = []
        try:
            for chunk in sdk.completions.create(model="broken", prompt="1+1=", max_tokens=5, stream=True):
                received.append(chunk.choices[0].text)
            raise AssertionError("the SDK did not raise the in-stream error")
        except openai.APIError as exc:
            assert "the engine lost this request" in str(exc)
        assert received == ["4", "2"]
    finally:
        server.stop()


def test_sse_chunks_are_compact_json_byte_for_byte(demo_deployment):
    """The front writes each chunk around a head encoded once per stream (openai_api._chunk_frame): every event
    must still be exactly the compact JSON of what it parses to, keys in OpenAI's order, `usage` only when asked."""
    asks = [("/v1/completions", {"prompt": "12+34=", "max_tokens": 6, "logprobs": 1}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "What is 2+3?"}], "max_tokens": 8})]
    for path, payload in asks:
        for include_usage in (False, True):
            reply = requests.post(f"{demo_deployment.url}{path}", timeout=60, json={
                **payload, "stream": True, "stream_options": {"include_usage": include_usage}})
            events = _events(reply)
            assert len(events) >= 3 and events[-1] == "[DONE]"
            for event in events[:-1]:
                chunk = json.loads(event)
                assert event == json.dumps(chunk, separators=(",", ":"))
                assert list(chunk)[:5] == ["id", "object", "created", "model", "choices"]
                assert ("usage" in chunk) == include_usage, event


def test_a_stream_the_engine_refuses_is_an_ordinary_400(demo_deployment):
    """A constraint only the engine can judge (the grammar engine compiles it at submit): the PyTriton backend's
    in-process stream raises it before the first byte, as a 400 naming the problem, not a 500 or an empty stream."""
    reply = requests.post(f"{demo_deployment.url}/v1/completions", timeout=60, json={
        "prompt": "1+1=", "max_tokens": 5, "stream": True, "guided_regex": "(unclosed"})
    assert reply.status_code == 400, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    assert "StructuredOutputError" in reply.json()["error"]["message"]
