"""Third-party clients against the real deployments of the demo checkpoint, once per serving backend
(tests/conftest.py: served_deployment; the modules mark pytest.mark.serving_backends("pytriton", "ray")).

The clients are the oracles: lm-evaluation-harness and the OpenAI SDK were written by others, so when
they read our answers the way they read vLLM's or OpenAI's, agreement means our server is right.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def base_url(served_deployment) -> str:
    return served_deployment.url


@pytest.fixture(scope="session")
def model_id(served_deployment) -> str:
    return served_deployment.model_id


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No hub here: lm-eval and datasets must read only the local task files (and fail, not hang, otherwise)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
