#!/usr/bin/env python3
"""A harness that misbehaves on purpose, for runtime fault tests (it IS a real process).

Installed by the tests as `nemo-evaluator` on PATH; behaviour is chosen by the
override `fake_mode=<mode>` (a suite's `params`, so each benchmark of one run can have its own),
else by the FAKE_HARNESS_MODE environment variable:
  good       write a valid results.yml
  fail       print some lines, exit 3
  crash      send 3 completions requests to --model_url, then die of an uncaught exception
  scored_then_fail  write a valid results.yml, then exit 1 (a harness that crashed after scoring)
  scored_through_errors  send 3 completions requests, count an error reply as a wrong answer (as
             BFCL and others do), write a valid results.yml, exit 0
  hang       start a child, write both pids to FAKE_HARNESS_PIDFILE, sleep forever
  no_results exit 0 without results.yml
  malformed  write a results.yml that is not the schema
  leak_key   print the value of $SECRET_FOR_TEST (must be masked in logs)
Every run also writes `<output_dir>/fake_record.json`: its arguments and the values
of the environment variables named in FAKE_HARNESS_RECORD_ENV (comma-separated).
"""

import json
import os
import subprocess
import sys
import time

args = sys.argv[1:]
output_dir = args[args.index("--output_dir") + 1]
overrides = dict(item.partition("=")[::2] for item in args[args.index("--overrides") + 1].split(",")) \
    if "--overrides" in args else {}
mode = overrides.get("fake_mode") or os.environ.get("FAKE_HARNESS_MODE", "good")
os.makedirs(output_dir, exist_ok=True)
with open(os.path.join(output_dir, "fake_record.json"), "w") as record:
    names = [n for n in os.environ.get("FAKE_HARNESS_RECORD_ENV", "").split(",") if n]
    json.dump({"argv": args, "env": {n: os.environ.get(n) for n in names}}, record)
for i in range(60):
    print(f"fake harness line {i}", flush=True)
if mode == "fail":
    print("fake harness: giving up", flush=True)
    sys.exit(3)
if mode in ("crash", "scored_through_errors"):
    import urllib.error
    import urllib.request

    url = args[args.index("--model_url") + 1]
    model = args[args.index("--model_id") + 1]
    for n in range(3):
        body = json.dumps({"model": model, "prompt": f"fake prompt {n}", "max_tokens": 4}).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30).read()
        except urllib.error.HTTPError as exc:
            if mode == "crash":
                raise
            print(f"fake harness: request {n} got {exc.code}; scored as a wrong answer", flush=True)
    if mode == "crash":
        raise RuntimeError("fake harness lost its way after 3 requests")
if mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    with open(os.environ["FAKE_HARNESS_PIDFILE"], "w") as handle:
        handle.write(f"{os.getpid()} {child.pid}\n")
    print("fake harness: hanging", flush=True)
    time.sleep(3600)
if mode == "leak_key":
    print(f"using key {os.environ.get('SECRET_FOR_TEST')}", flush=True)
path = os.path.join(output_dir, "results.yml")
if mode == "malformed":
    with open(path, "w") as handle:
        handle.write("results:\n  tasks:\n    t: {metrics: {acc: {scores: {acc: {value: not-a-number}}}}}\n")
elif mode != "no_results":
    with open(path, "w") as handle:
        handle.write("results:\n  tasks:\n    t: {metrics: {acc: {scores: {acc: {value: 0.75, stats: {stderr: 0.1}}}}}}\n")
print("fake harness: done", flush=True)
if mode == "scored_then_fail":
    print("fake harness: scored, then failed writing its report", flush=True)
    sys.exit(1)
