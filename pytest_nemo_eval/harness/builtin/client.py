"""HTTP client for the model endpoint: completions, chat (with tools too), and loglikelihood via echo+logprobs.

Connection errors, 429 and 5xx are retried with exponential backoff (the proxy
or server may still be warming up); anything else fails the run loudly, since
a request silently scored as wrong would be a wrong score.
"""

from __future__ import annotations

import math
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import HarnessError


class EndpointError(HarnessError):
    """The model endpoint did not answer usefully."""


class ModelClient:
    def __init__(
        self,
        url: str,
        model_id: str,
        model_type: str,
        *,
        api_key: str | None = None,
        request_timeout_s: float = 300.0,
        max_retries: int = 5,
        pool_size: int = 16,
    ) -> None:
        self.url = url
        self.model_id = model_id
        self.model_type = model_type
        self.request_timeout_s = request_timeout_s
        self.session = requests.Session()
        retry = Retry(
            total=max_retries,
            connect=max_retries,
            read=0,  # a timed-out generation is not retried: it would double the load
            status=max_retries,
            backoff_factor=0.5,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None,  # POST too: our requests are idempotent
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.session.post(self.url, json=payload, timeout=self.request_timeout_s)
        except requests.RequestException as exc:
            raise EndpointError(
                f"Request to {self.url} failed after retries ({type(exc).__name__}: {exc}). "
                "Is the model server (or proxy) running and is --model_url right?"
            ) from None
        if response.status_code != 200:
            raise EndpointError(
                f"{self.url} answered HTTP {response.status_code}: {response.text[:500]}"
            )
        try:
            return response.json()
        except ValueError:
            raise EndpointError(f"{self.url} answered non-JSON: {response.text[:200]!r}") from None

    def generate(self, prompt: str, *, max_tokens: int, temperature: float, stop: list[str],
                 top_p: float | None = None, seed: int | None = None) -> str:
        """Text the model generates for `prompt` (as a user message for chat endpoints)."""
        payload: dict[str, Any] = {"model": self.model_id, "max_tokens": max_tokens, "temperature": temperature}
        if stop:
            payload["stop"] = stop
        if top_p is not None:
            payload["top_p"] = top_p
        if seed is not None:
            payload["seed"] = seed
        if self.model_type == "chat":
            payload["messages"] = [{"role": "user", "content": prompt}]
        else:
            payload["prompt"] = prompt
        body = self._post(payload)
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"] if self.model_type == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"{self.url} answered without choices[0] text: {str(body)[:300]}") from None
        return text or ""

    def chat_with_tools(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], *, max_tokens: int,
                        temperature: float, top_p: float | None = None, seed: int | None = None) -> dict[str, Any]:
        """The reply message (`content`, `tool_calls`) to a chat request offering `tools` (no tool_choice:
        the server's `auto`, as BFCL and inspect_ai send it)."""
        if self.model_type != "chat":
            raise EndpointError(
                "Tool-call tasks need a chat endpoint: run them with --model_type chat and a "
                "/v1/chat/completions URL (the server renders the tools with the model's chat template)."
            )
        payload: dict[str, Any] = {"model": self.model_id, "messages": messages, "tools": tools,
                                   "max_tokens": max_tokens, "temperature": temperature}
        if top_p is not None:
            payload["top_p"] = top_p
        if seed is not None:
            payload["seed"] = seed
        body = self._post(payload)
        try:
            message = body["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"{self.url} answered without choices[0].message: {str(body)[:300]}") from None
        if not isinstance(message, dict):
            raise EndpointError(f"{self.url} answered a choices[0].message that is not an object: {str(body)[:300]}")
        return message

    def loglikelihood(self, context: str, continuation: str) -> float:
        """Sum of log P(continuation tokens | context), scored by the server with echo+logprobs."""
        if self.model_type != "completions":
            raise EndpointError(
                "Multiple-choice (loglikelihood) tasks need a completions endpoint: run them with "
                "--model_type completions and a /v1/completions URL."
            )
        body = self._post({
            "model": self.model_id, "prompt": context + continuation, "max_tokens": 0,
            "echo": True, "logprobs": 0, "temperature": 0.0,
        })
        try:
            logprobs = body["choices"][0]["logprobs"]
            tokens: list[str] = logprobs["tokens"]
            token_logprobs: list[float | None] = logprobs["token_logprobs"]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(
                f"{self.url} answered an echo+logprobs request without choices[0].logprobs "
                f"(tokens, token_logprobs): {str(body)[:300]}. The server must support echo with max_tokens=0."
            ) from None
        offsets = logprobs.get("text_offset") or _offsets(tokens)
        picked = [lp for lp, offset in zip(token_logprobs, offsets) if offset >= len(context)]
        if not picked or any(lp is None or math.isnan(lp) for lp in picked):
            raise EndpointError(
                f"No usable logprobs for the continuation {continuation!r} (context {context[-40:]!r}); "
                "the server's echo logprobs do not cover it."
            )
        return float(sum(picked))


def _offsets(tokens: list[str]) -> list[int]:
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return offsets
