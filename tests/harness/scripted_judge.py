"""A scripted judge: an OpenAI-shaped chat (and completions) server (a plain WSGI app on waitress, like
tests/adapters/scripted_upstream.py) that answers every judging request with the same verdict text,
e.g. MT-Bench's `Rating: [[7]]`, and keeps the requests it got. A test double: it lives with the tests."""

from __future__ import annotations

import json

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread


class ScriptedJudge:
    """`with ScriptedJudge("Rating: [[7]]") as judge: judge.url; judge.requests`."""

    def __init__(self, verdict: str, model_id: str = "scripted-judge"):
        self.verdict, self.model_id = verdict, model_id
        self.requests: list[dict] = []
        self.authorizations: list[str | None] = []
        self._server = ServerThread(self._app, host="127.0.0.1", port=0, threads=8, name="scripted-judge")
        self.url = self._server.url

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "")
        if path.endswith("/models"):
            body = {"object": "list", "data": [{"id": self.model_id, "object": "model"}]}
        elif path.endswith("/completions") and not path.endswith("/chat/completions"):  # judges that prompt raw
            self.requests.append(json.loads(raw))
            self.authorizations.append(environ.get("HTTP_AUTHORIZATION"))
            body = {"id": f"judge-{len(self.requests)}", "object": "text_completion", "model": self.model_id,
                    "choices": [{"index": 0, "finish_reason": "stop", "text": self.verdict, "logprobs": None}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        elif path.endswith("/chat/completions") and environ["REQUEST_METHOD"] == "POST":
            self.requests.append(json.loads(raw))
            self.authorizations.append(environ.get("HTTP_AUTHORIZATION"))
            body = {"id": f"judge-{len(self.requests)}", "object": "chat.completion", "model": self.model_id,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": self.verdict}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        else:
            body = {"error": {"message": f"no route {path}"}}
        data = json.dumps(body).encode()
        start_response("200 OK" if "error" not in body else "404 Not Found",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def __enter__(self) -> ScriptedJudge:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop(grace_s=2.0)
