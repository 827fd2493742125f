"""Deploy the checkpoint only when a request needs the model: the proxy's upstream gate.

Why: a re-gate whose every request is a cache hit needs no model, and loading one is minutes of GPU
on a real checkpoint. The proxy (adapters/upstream.py) asks this gate before each upstream call:
- `GET /v1/models` and vLLM's tokenizer routes (`/tokenizer_info`, `/tokenize`, `/detokenize`) are
  answered here, without the weights, by the deployment's own HTTP front (serving/openai_api.py)
  over the checkpoint's tokenizer and config: the same code and inputs, so the same answers (only
  `/v1/models`' `created` time differs, as it does between two deployments).
- any other request (a cache miss) deploys first: the first one waits while the model loads, with
  the deployment's progress printed; requests arriving meanwhile wait for the same deployment.
A deployment that failed is not retried: every later request gets the same error at once (`UpstreamLost`,
which the retry interceptor does not retry).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from pytest_nemo_eval.adapters.exchange import ProxyRequest, ProxyResponse
from pytest_nemo_eval.adapters.upstream import UpstreamLost

WEIGHTLESS_ROUTES = {("GET", "/v1/models"), ("GET", "/tokenizer_info"), ("POST", "/tokenize"),
                     ("POST", "/detokenize")}
PROGRESS_EVERY_S = 10.0


class LazyDeployment:
    """`UpstreamGate` of a run that deploys `checkpoint` through `deploy()` on first need."""

    def __init__(self, checkpoint: Path, deploy: Callable[[], Any], progress: Callable[[str], None] = print,
                 log_tail: Callable[[], str] = lambda: "") -> None:
        self.checkpoint = checkpoint
        self._deploy = deploy
        self._progress = progress
        self._log_tail = log_tail
        self._lock = threading.Lock()
        self._live = False
        self._failure: str | None = None
        self._front: Any = None  # the weightless flask front, built on first use
        self._front_failed = False
        self.weightless_answers = 0

    @property
    def live(self) -> bool:
        return self._live

    def before_send(self, request: ProxyRequest) -> ProxyResponse | None:
        if self._live:
            return None
        if (request.method, request.path) in WEIGHTLESS_ROUTES:
            answer = self._weightless(request)
            if answer is not None:
                return answer
        self.ensure_live()
        return None

    def ensure_live(self) -> None:
        """Deploy now unless deployed; the first caller deploys, the others wait for it."""
        if self._live:
            return
        with self._lock:
            if self._failure is not None:
                raise UpstreamLost(self._failure)
            if self._live:
                return
            done = threading.Event()
            ticker = threading.Thread(target=self._tick, args=(done,), name="nemo-eval-deploy-progress", daemon=True)
            self._progress(f"[nemo-eval] a request missed the cache: deploying {self.checkpoint} now "
                           "(the request waits)")
            ticker.start()
            try:
                self._deploy()
            except BaseException as exc:
                self._failure = (f"Diagnosis: deploying {self.checkpoint} on the first request that needed the "
                                 f"model failed: {exc}")
                raise UpstreamLost(self._failure) from None
            finally:
                done.set()
            self._live = True

    def close(self, reason: str) -> None:
        """No deployment after this: a later request gets `reason` instead of starting one."""
        if not self._live and self._failure is None:
            self._failure = f"no deployment: {reason}"

    def _tick(self, done: threading.Event) -> None:
        """Progress while the model loads: elapsed time and the deployment log's last line."""
        started = time.monotonic()
        while not done.wait(PROGRESS_EVERY_S):
            lines = [line for line in self._log_tail().splitlines() if line.strip()]
            last = f": {lines[-1].strip()[:160]}" if lines else ""
            self._progress(f"[nemo-eval] still deploying ({time.monotonic() - started:.0f} s){last}")

    def _weightless(self, request: ProxyRequest) -> ProxyResponse | None:
        """The deployment front's answer without the weights, or None when the front cannot be built here
        (the request then deploys, so an answer is never a guess)."""
        front = self._weightless_front()
        if front is None:
            return None
        reply = front.open(request.path, method=request.method, data=request.body or None,
                           content_type=request.headers.get("Content-Type", "application/json"))
        self.weightless_answers += 1
        return ProxyResponse(status=reply.status_code, body=reply.get_data(),
                             content_type=reply.headers.get("Content-Type", "application/json"))

    def _weightless_front(self) -> Any:
        if self._front is None and not self._front_failed:
            with self._lock:
                if self._front is None and not self._front_failed:
                    try:
                        self._front = build_weightless_front(self.checkpoint).test_client()
                    except Exception as exc:  # an unusual layout: the deployment answers these instead
                        self._front_failed = True
                        self._progress(f"[nemo-eval] {self.checkpoint}: /v1/models and the tokenizer routes "
                                       f"need the deployment ({type(exc).__name__}: {exc})")
        return self._front


def build_weightless_front(checkpoint: Path) -> Any:
    """serving/openai_api.py's flask app over the checkpoint's tokenizer and context length, with a generate
    that refuses: what a deployment answers before any generation, read from the files it reads."""
    from pytest_nemo_eval.checkpoint.config import read_architecture, read_bridge_architecture
    from pytest_nemo_eval.checkpoint.layout import detect_layout
    from pytest_nemo_eval.checkpoint.tokenizer import load_tokenizer
    from pytest_nemo_eval.serving.openai_api import ServedModel, create_app

    layout = detect_layout(checkpoint)
    arch = (read_bridge_architecture(layout.config_file) if layout.format == "megatron-bridge"
            else read_architecture(layout.config_file))

    def refuse(_requests: Any) -> Any:
        raise RuntimeError("the weightless front generates nothing")

    served = ServedModel(model_id=layout.root.name, tokenizer=load_tokenizer(layout.tokenizer_dir),
                         max_context=arch.seq_length, generate=refuse)
    return create_app(served)
