"""A small real OpenAI-shaped server whose behaviour is scripted — the proxy's test bench (a test
double: it lives with the tests and the proxy benchmark, not in the package users install).

Not a model: it answers `/v1/completions` and `/v1/chat/completions` by echoing
the request (`received` holds the body it got, `id` counts calls, so a cached
reply is recognisable), and can be told to misbehave on purpose: fail the next
N requests with a status, hang, or answer non-JSON. `tool_reply` makes chat
answers tool calls shaped as vLLM sends them (streamed too), or an unparsable
call (`stop_reason: "tool_call_invalid"`); `reasoning_reply` makes them a reasoning model's: the thought
split into `reasoning_content` (and `reasoning`) as our server and vLLM's reasoning parsers send it, or
left in the text as `<think>...</think>` (`split: false`, an endpoint without a parser), the next
`cut_next` replies cut off by the token cap inside the thought; `last_reply` keeps the bytes last sent. It is a plain WSGI app on
waitress (no framework) so it is fast enough to benchmark the proxy against.

    python tests/adapters/scripted_upstream.py --port 0   # prints "listening on URL"
    POST /_script {"fail_next": 3, "fail_status": 500, "hang_s": 0, "non_json": false,
                   "tool_reply": {"calls": [{"name": "f", "arguments": "{}"}], "content": null, "stop_reason": null,
                                  "reasoning": null},
                   "reasoning_reply": {"reasoning": "12+34", "content": "46", "split": true, "usage_details": true,
                                       "cut_next": 0, "cut_finish_reason": "length"}}
    GET  /_script -> {"calls": N, ...}
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from typing import Any, Callable

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread

MODEL_ID = "scripted-model"


class Script:
    """Mutable behaviour, shared by the server threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fail_next = 0
        self.fail_status = 500
        self.hang_s = 0.0
        self.non_json = False
        self.reply_prefix = ""
        self.tool_reply: dict[str, Any] | None = None
        self.reasoning_reply: dict[str, Any] | None = None
        self.last_reply = b""
        self.calls = 0
        self._ids = itertools.count(1)

    def update(self, changes: dict[str, Any]) -> None:
        with self.lock:
            for key, value in changes.items():
                if key not in ("fail_next", "fail_status", "hang_s", "non_json", "reply_prefix", "tool_reply",
                               "reasoning_reply"):
                    raise KeyError(key)
                setattr(self, key, value)

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {k: getattr(self, k) for k in ("calls", "fail_next", "fail_status", "hang_s", "non_json", "reply_prefix",
                                                  "reasoning_reply")}

    def next_reasoning_cut(self) -> bool:
        """Whether this reasoning reply is one of the next `cut_next` (counted down)."""
        with self.lock:
            spec = self.reasoning_reply or {}
            if spec.get("cut_next", 0) > 0:
                self.reasoning_reply = {**spec, "cut_next": spec["cut_next"] - 1}
                return True
            return False

    def next_call(self) -> tuple[int, int | None]:
        """(call id, status to fail with or None)."""
        with self.lock:
            self.calls += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return next(self._ids), self.fail_status
            return next(self._ids), None


def make_app(script: Script) -> Callable:
    def app(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        if path == "/_script":
            if method == "POST":
                script.update(json.loads(raw))
            return _reply(start_response, 200, script.state())
        if path in ("/v1/models", "/v1/health", "/health"):
            return _reply(start_response, 200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            return _reply(start_response, 404, {"error": {"message": f"no route {method} {path}"}})
        call_id, fail_status = script.next_call()
        if script.hang_s:
            time.sleep(script.hang_s)
        if fail_status is not None:
            return _reply(start_response, fail_status, {"error": {"message": f"scripted failure {fail_status}"}})
        if script.non_json:
            start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", "26")])
            return [b"<html>Bad Gateway!</html>\n"]
        request = json.loads(raw)
        if script.tool_reply is not None and path.endswith("chat/completions"):
            return _tool_reply(start_response, script, call_id, request)
        if script.reasoning_reply is not None:
            return _reasoning_reply(start_response, script, call_id, path, request)
        reply = _completion(call_id, path, request, script.reply_prefix)
        if request.get("stream"):
            events = f"data: {json.dumps(reply)}\n\ndata: [DONE]\n\n".encode()
            start_response("200 OK", [("Content-Type", "text/event-stream"), ("Content-Length", str(len(events)))])
            return [events]
        if "HTTP_AUTHORIZATION" in environ:  # lets tests check the proxy's key injection and redaction
            reply["seen_authorization"] = environ["HTTP_AUTHORIZATION"]
        return _reply(start_response, 200, reply)

    return app


def _completion(call_id: int, path: str, body: dict, prefix: str) -> dict:
    chat = path.endswith("chat/completions")
    if chat:
        messages = body.get("messages") or [{}]
        source = str(messages[-1].get("content", ""))
    else:
        source = str(body.get("prompt", ""))
    text = prefix + "echo:" + source
    choice = {"index": 0, "finish_reason": "stop"}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    prompt_tokens = len(source.split())
    return {
        "id": f"cmpl-{call_id}",
        "object": "chat.completion" if chat else "text_completion",
        "model": body.get("model", MODEL_ID),
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text), "total_tokens": prompt_tokens + len(text)},
        "received": body,
    }


def _tool_reply(start_response, script: Script, call_id: int, request: dict) -> list[bytes]:
    """A chat answer as vLLM's tool parsers produce it: `message.tool_calls` (arguments a JSON string),
    `content` the text before the call or null, finish_reason `tool_calls`; or, with `stop_reason`
    `tool_call_<why>`, no calls and the raw text in `content`. Streamed as vLLM streams it: a role
    delta, the content, per call its head then its arguments in two fragments, then the finish."""
    spec = script.tool_reply or {}
    calls = [{"id": f"chatcmpl-tool-{call_id:08x}{i:02x}", "type": "function",
              "function": {"name": c["name"], "arguments": c.get("arguments", "{}")}}
             for i, c in enumerate(spec.get("calls") or [])]
    content = spec.get("content")
    finish = "tool_calls" if calls else "stop"
    head = {"id": f"chatcmpl-{call_id}", "created": 1700000000, "model": request.get("model", MODEL_ID)}
    usage = {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}
    if not request.get("stream"):
        message = {"role": "assistant", "content": content, "tool_calls": calls}
        if spec.get("reasoning"):  # a thinking model's call: its thought beside it (not streamed)
            message["reasoning_content"] = spec["reasoning"]
        reply = {**head, "object": "chat.completion", "usage": usage,
                 "choices": [{"index": 0, "message": message, "finish_reason": finish,
                              "stop_reason": spec.get("stop_reason")}]}
        return _reply(start_response, 200, reply, script)

    def chunk(delta: dict, **extra) -> str:
        body = {**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, **extra}]}
        return f"data: {json.dumps(body)}\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    if content:
        events.append(chunk({"content": content}))
    for i, call in enumerate(calls):
        events.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"]}}]}))
        arguments = call["function"]["arguments"]
        for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2:]):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
    events.append(chunk({}, finish_reason=finish, stop_reason=spec.get("stop_reason")))
    return _stream_reply(start_response, script, events, request, head, usage)


def _reasoning_reply(start_response, script: Script, call_id: int, path: str, request: dict) -> list[bytes]:
    """A thinking model's answer. Split (`split`, default true; chat only): `reasoning_content` and `reasoning`
    hold the thought, `content` the answer; cut off (one of the next `cut_next`): `content` "", the thought
    so far, `finish_reason` `cut_finish_reason` (default "length"; "stop" plays a server that mislabels it).
    Not split: `<think>thought</think>answer` in the text, just `<think>thought` when cut. Tokens are
    characters: `completion_tokens` the generated text's length (the tags included when not split),
    `completion_tokens_details.reasoning_tokens` the thought's when split and `usage_details` (default true);
    `fields` names the message fields that carry the thought (vLLM >= 0.19 sends only `reasoning`).
    Streamed as our server streams it: a role delta, reasoning deltas, content deltas, the finish, usage."""
    spec = script.reasoning_reply or {}
    chat = path.endswith("chat/completions")
    cut = script.next_reasoning_cut()
    thought = spec.get("reasoning", "12+34")
    thought = thought[: len(thought) // 2] if cut else thought
    answer = "" if cut else spec.get("content", "46")
    split = chat and spec.get("split", True)
    finish = spec.get("cut_finish_reason", "length") if cut else "stop"
    text = answer if split else f"<think>{thought}" + ("" if cut else f"</think>{answer}")
    generated = len(thought) + len(answer) if split else len(text)
    usage: dict[str, Any] = {"prompt_tokens": 5, "completion_tokens": generated, "total_tokens": 5 + generated}
    if split and spec.get("usage_details", True):
        usage["completion_tokens_details"] = {"reasoning_tokens": len(thought)}
    head = {"id": f"chatcmpl-{call_id}", "created": 1700000000, "model": request.get("model", MODEL_ID)}
    if not request.get("stream"):
        if chat:
            message = {"role": "assistant", "content": text}
            if split:
                message.update({field: thought for field in spec.get("fields", ("reasoning_content", "reasoning"))})
            choice = {"index": 0, "message": message, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish}
        reply = {**head, "object": "chat.completion" if chat else "text_completion", "choices": [choice],
                 "usage": usage, "received": request}
        return _reply(start_response, 200, reply, script)

    def chunk(piece: dict) -> str:
        body = {**head, "object": "chat.completion.chunk" if chat else "text_completion", "choices": [piece]}
        return f"data: {json.dumps(body)}\n\n"

    def part(value: str) -> dict:
        return ({"index": 0, "delta": value} if chat else {"index": 0, "text": value}) | {"finish_reason": None}

    events = [chunk(part({"role": "assistant", "content": ""}))] if chat else []
    if split:
        for piece in (thought[: len(thought) // 2], thought[len(thought) // 2:]):
            events.append(chunk(part({"reasoning_content": piece, "reasoning": piece})))
        pieces = [answer] if answer else []
    else:
        pieces = [text[: len(text) // 2], text[len(text) // 2:]]
    events += [chunk(part({"content": piece} if chat else piece)) for piece in pieces]
    events.append(chunk({**part({} if chat else ""), "finish_reason": finish}))
    return _stream_reply(start_response, script, events, request, head, usage)


def _stream_reply(start_response, script: Script, events: list[str], request: dict, head: dict,
                  usage: dict) -> list[bytes]:
    """The SSE body of a scripted stream: its events, the usage chunk when asked for, then [DONE]."""
    if (request.get("stream_options") or {}).get("include_usage"):
        events.append(f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n")
    data = ("".join(events) + "data: [DONE]\n\n").encode()
    script.last_reply = data
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Content-Length", str(len(data)))])
    return [data]


def _reply(start_response, status: int, payload: dict, script: Script | None = None) -> list[bytes]:
    data = json.dumps(payload).encode()
    if script is not None:
        script.last_reply = data
    start_response(f"{status} X", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class ScriptedUpstream:
    """In-process server: `with ScriptedUpstream() as up: up.url; up.script.fail_next = 3`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, threads: int = 16) -> None:
        self.script = Script()
        self._server = ServerThread(make_app(self.script), host=host, port=port, threads=threads, name="scripted-upstream")
        self.url = self._server.url

    def __enter__(self) -> "ScriptedUpstream":
        self._server.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.stop(grace_s=2.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    with ScriptedUpstream(args.host, args.port, args.threads) as upstream:
        print(f"scripted upstream listening on {upstream.url}", flush=True)
        try:
            upstream._server.join()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
