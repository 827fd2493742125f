"""Tiny request helpers shared by the proxy tests."""

from __future__ import annotations

import requests


def completion(session: requests.Session, base_url: str, prompt: str = "hello world", **extra) -> requests.Response:
    return session.post(f"{base_url}/v1/completions", json={"model": "m", "prompt": prompt, **extra}, timeout=30)


def chat(session: requests.Session, base_url: str, messages: list[dict], **extra) -> requests.Response:
    return session.post(f"{base_url}/v1/chat/completions", json={"model": "m", "messages": messages, **extra}, timeout=30)
