"""A scripted chat model that calls tools: an OpenAI-shaped server (a plain WSGI app on waitress, like
oracle_upstream.py) that answers "What is A plus B?" with `add(a=A, b=B)` as OpenAI and vLLM shape a
tool call (`message.tool_calls[].function.arguments` a JSON string, `finish_reason: tool_calls`). Told which
questions to get wrong, and how, it makes the harness's scorer meet every kind of reply. A test double."""

from __future__ import annotations

import json
import re

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread

QUESTION = re.compile(r"What is (\d+) plus (\d+)\?")


class ToolUpstream:
    def __init__(self, *, misbehave: dict[tuple[int, int], str] | None = None) -> None:
        """`misbehave`: question (a, b) -> how to answer it wrong: `text` (a number, no call), `wrong_name`,
        `wrong_arguments`, `extra_argument` or `bad_json` (arguments cut short)."""
        self.misbehave = misbehave or {}
        self.requests: list[dict] = []
        self._server = ServerThread(self._app, host="127.0.0.1", port=0, threads=8, name="tool-upstream")
        self.url = self._server.url

    def _message(self, request: dict) -> tuple[dict, str]:
        question = QUESTION.search(str(request["messages"][-1].get("content", "")))
        if not request.get("tools") or question is None:
            return {"role": "assistant", "content": "I do not know."}, "stop"
        a, b = (int(n) for n in question.groups())
        how = self.misbehave.get((a, b))
        if how == "text":
            return {"role": "assistant", "content": str(a + b)}, "stop"
        name = "subtract" if how == "wrong_name" else request["tools"][0]["function"]["name"]
        arguments = json.dumps({"b": b, "a": a})  # the other key order, no matter: compared as JSON
        if how == "wrong_arguments":
            arguments = json.dumps({"a": a, "b": b + 1})
        elif how == "extra_argument":
            arguments = json.dumps({"a": a, "b": b, "c": 0})
        elif how == "bad_json":
            arguments = arguments[:-1]
        call = {"id": f"chatcmpl-tool-{len(self.requests):08x}", "type": "function",
                "function": {"name": name, "arguments": arguments}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "")
        if path.endswith("/chat/completions"):
            request = json.loads(raw)
            self.requests.append(request)
            message, finish = self._message(request)
            body = {"id": f"tools-{len(self.requests)}", "object": "chat.completion", "model": "tools",
                    "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        else:
            body = {"object": "list", "data": [{"id": "tools", "object": "model"}]}
        data = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def __enter__(self) -> ToolUpstream:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop(grace_s=2.0)
