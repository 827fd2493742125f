"""The one-line diagnosis tells a dead local endpoint from a blocked download (both are connection errors)."""

from __future__ import annotations

import pytest

from pytest_nemo_eval.harness.diagnosis import diagnose

# Error lines as urllib, requests/urllib3 and huggingface_hub print them.
REFUSED_URLLIB = "urllib.error.URLError: <urlopen error [Errno 111] Connection refused>"
REFUSED_REQUESTS = ("requests.exceptions.ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=40003): Max "
                    "retries exceeded with url: /v1/chat/completions (Caused by NewConnectionError('<urllib3."
                    "connection.HTTPConnection object at 0x7f>: Failed to establish a new connection: [Errno 111] "
                    "Connection refused'))")
HUB_BLOCKED = ("requests.exceptions.ConnectionError: HTTPSConnectionPool(host='huggingface.co', port=443): Max "
               "retries exceeded with url: /api/datasets/openai_humaneval (Caused by NameResolutionError(\"Failed "
               "to resolve 'huggingface.co' ([Errno -3] Temporary failure in name resolution)\"))")
JUDGE_DOWN = "ERROR judge request to http://127.0.0.1:41234/v1/chat/completions failed: Connection refused"


@pytest.mark.parametrize("line,cause", [
    (REFUSED_URLLIB, "endpoint refused the connection"),
    (REFUSED_REQUESTS, "endpoint refused the connection"),
    (HUB_BLOCKED, "download blocked"),
    (JUDGE_DOWN, "judge unreachable"),
])
def test_connection_failures_are_told_apart(line, cause):
    diagnosis = diagnose(f"Traceback (most recent call last):\n  File \"x.py\", line 1\n{line}\n")
    assert diagnosis is not None and diagnosis.startswith(f"Diagnosis: {cause}:"), diagnosis
