"""An "oracle" chat model for math benchmarks: an OpenAI-shaped server (a plain WSGI app on waitress, like
tests/adapters/scripted_upstream.py) that finds the local problem quoted in the last user message and
answers its number as `<prefix>: <n>`, once per answer prefix it was given. A harness's own parser and
scorer then decide the score; with the right prefixes it is 1.0. A test double: it lives with the tests."""

from __future__ import annotations

import json
from pathlib import Path

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread


class OracleUpstream:
    def __init__(self, problems: Path, *, question_key: str, answer_key: str, prefixes: list[str]):
        records = [json.loads(line) for line in problems.read_text().splitlines() if line.strip()]
        self.answers = {r[question_key]: r[answer_key] for r in records}
        self.prefixes = prefixes
        self.requests: list[dict] = []
        self._server = ServerThread(self._app, host="127.0.0.1", port=0, threads=8, name="oracle-upstream")
        self.url = self._server.url

    def _reply_text(self, prompt: str) -> str:
        number = next((answer for question, answer in self.answers.items() if question in prompt), None)
        return "\n".join(f"{prefix}: {number}" for prefix in self.prefixes) if number is not None else "I do not know."

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "")
        if path.endswith("/models"):
            body = {"object": "list", "data": [{"id": "oracle", "object": "model"}]}
        elif path.endswith("/chat/completions"):
            request = json.loads(raw)
            self.requests.append(request)
            text = self._reply_text(str(request["messages"][-1].get("content", "")))
            body = {"id": f"oracle-{len(self.requests)}", "object": "chat.completion", "model": "oracle",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        else:
            body = {"error": {"message": f"no route {path}"}}
        data = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def __enter__(self) -> OracleUpstream:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop(grace_s=2.0)
