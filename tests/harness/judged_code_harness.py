"""A tiny judged code harness, installed by the tests as `nemo-evaluator` in a venv of its own (standard
library only: under bubblewrap it runs with that venv's interpreter and nothing of the host's).

`nemo-evaluator run_eval --model_url U --model_type chat|completions --output_dir D --overrides K=V,...`:
it asks the model (U) once, sends the reply to its judge (`config.params.extra.judge.url`, a chat URL)
and reads the judge's `Rating: [[N]]`, as MT-Bench does; then it tries to connect to
`config.params.extra.forbidden_port` on 127.0.0.1, as hostile model code would. It writes `results.yml`
(`rating` = the judge's N, `reached_forbidden` = 1.0 if that connection succeeded) and `probe.json` with
what it saw (its whole environment included). A test double: the real judged harnesses (mtbench,
safety-harness) run no model code.
"""

import json
import os
import re
import socket
import sys
import urllib.request

JUDGE_URL = "config.params.extra.judge.url"
FORBIDDEN_PORT = "config.params.extra.forbidden_port"


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.load(reply)


def main(args: list[str]) -> int:
    option = dict(zip(args[1::2], args[2::2]))
    output_dir = option["--output_dir"]
    overrides = dict(item.partition("=")[::2] for item in option.get("--overrides", "").split(","))
    chat = option["--model_type"] == "chat"
    prompt = "def add(a, b):"
    if chat:
        answer = post(option["--model_url"], {"model": option["--model_id"], "max_tokens": 8,
                                              "messages": [{"role": "user", "content": prompt}]})
    else:
        answer = post(option["--model_url"], {"model": option["--model_id"], "max_tokens": 8, "prompt": prompt})
    verdict = post(overrides[JUDGE_URL], {"model": overrides.get("config.params.extra.judge.model_id", "judge"),
                                          "messages": [{"role": "user", "content": f"Rate: {json.dumps(answer)}"}]})
    rating = float(re.search(r"\[\[(\d+)\]\]", verdict["choices"][0]["message"]["content"]).group(1))
    try:
        socket.create_connection(("127.0.0.1", int(overrides[FORBIDDEN_PORT])), timeout=3).close()
        reached = True
    except OSError:
        reached = False
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "probe.json"), "w") as handle:
        json.dump({"model_url": option["--model_url"], "judge_url": overrides[JUDGE_URL],
                   "reached_forbidden": reached, "env": dict(os.environ)}, handle)
    with open(os.path.join(output_dir, "results.yml"), "w") as handle:
        handle.write("results:\n  tasks:\n    judged_code:\n      metrics:\n"
                     f"        rating: {{scores: {{rating: {{value: {rating}}}}}}}\n"
                     f"        reached_forbidden: {{scores: {{reached_forbidden: {{value: {float(reached)}}}}}}}\n")
    print(f"judged code harness: rating {rating}, forbidden port reached: {reached}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
