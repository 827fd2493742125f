"""Serving tests share ONE real deployment of the demo checkpoint (tests/conftest.py: demo_deployment)
and, for exactness checks, one in-process load of the same checkpoint (`direct`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

DATA_DIR = Path(__file__).resolve().parents[2] / "pytest_nemo_eval" / "harness" / "builtin" / "data"


class Api:
    """A tiny OpenAI client over one keep-alive session, returning (status, json)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def post(self, path: str, payload=None, *, data: str | None = None) -> tuple[int, dict]:
        if data is not None:
            reply = self.session.post(self.base_url + path, data=data, headers={"Content-Type": "application/json"},
                                      timeout=120)
        else:
            reply = self.session.post(self.base_url + path, json=payload, timeout=120)
        return reply.status_code, reply.json()

    def get(self, path: str) -> tuple[int, dict]:
        reply = self.session.get(self.base_url + path, timeout=30)
        return reply.status_code, reply.json()

    def complete(self, **payload) -> dict:
        status, body = self.post("/v1/completions", payload)
        assert status == 200, body
        return body


@pytest.fixture(scope="session")
def api(served_deployment) -> Api:
    """The deployment of the test's serving backend: PyTriton, and Ray Serve too in the modules that mark
    pytest.mark.serving_backends("pytriton", "ray") (the OpenAI front is one; those cover what reaches the
    backend: generation, streaming, tokenizer routes, bad input)."""
    return Api(served_deployment.url)


@pytest.fixture(scope="session")
def direct(demo_checkpoint):
    """The demo checkpoint loaded in this process (model + tokenizer), to compare served answers with."""
    from pytest_nemo_eval.checkpoint.loader import load_checkpoint

    return load_checkpoint(demo_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def heldout_addition() -> list[dict]:
    lines = (DATA_DIR / "demo_addition.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]
