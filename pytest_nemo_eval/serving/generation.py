"""The request/result types of generation, shared by the HTTP front, every backend and the engine.

Imports neither torch nor any backend: the OpenAI layer and the plugin use these
without loading a model. A backend answers a request that it cannot serve by
raising GenerationFailed (invalid_request: an HTTP 400; otherwise a 500).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

MAX_TOP_LOGPROBS = 20


class StructuredOutput(BaseModel):
    """A constraint on what a request may generate, enforced in the engine as a token mask at every step.

    Exactly one field is set. The HTTP front builds it from `response_format`, vLLM's `guided_*` fields or
    `structured_outputs`, and from `tool_choice` "required" / a named function; the engine compiles it with
    the grammar engine (serving/structured_output.py) against the tokenizer it serves.
    """

    json_schema: dict | None = None  # a JSON schema; {} or {"type": "object"} is OpenAI's JSON mode
    regex: str | None = None
    choice: list[str] | None = None  # the output is exactly one of these strings
    grammar: str | None = None  # a Lark grammar (llguidance's dialect), vLLM's guided_grammar

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [name for name in ("json_schema", "regex", "choice", "grammar") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"a structured output sets exactly one of json_schema, regex, choice, grammar (got {given})")
        return self


class GenerationRequest(BaseModel):
    prompt_ids: list[int]
    max_tokens: int = Field(16, ge=0)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False
    ignore_eos: bool = False  # generate exactly max_tokens (as vLLM's option): load tests with equal work per request
    request_id: str | None = None  # names the request for cancel(); unique among those in flight
    structured: StructuredOutput | None = None  # constrained decoding (JSON schema, regex, choice, grammar)


class TokenLogprob(BaseModel):
    token_id: int
    token: str
    logprob: float
    top: dict[str, float]


class GenerationResult(BaseModel):
    output_ids: list[int]
    text: str
    finish_reason: Literal["stop", "length"]
    prompt_logprobs: list[TokenLogprob | None] | None = None
    output_logprobs: list[TokenLogprob] | None = None


class GenerationDelta(BaseModel):
    """What a streamed request gained since its previous delta; the last one has `finish_reason`."""

    output_ids: list[int]
    text: str
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None  # first delta of an echo request only
    finish_reason: Literal["stop", "length"] | None = None


def merge_deltas(deltas: list[GenerationDelta]) -> GenerationDelta:
    """Consecutive deltas of one request as one (a stream relays what piled up while it was busy)."""
    if len(deltas) == 1:
        return deltas[0]
    logprobs = None
    if any(d.logprobs is not None for d in deltas):
        logprobs = [entry for d in deltas for entry in d.logprobs or []]
    return GenerationDelta(
        output_ids=[t for d in deltas for t in d.output_ids], text="".join(d.text for d in deltas),
        logprobs=logprobs, prompt_logprobs=deltas[0].prompt_logprobs, finish_reason=deltas[-1].finish_reason,
    )


class GenerationFailed(Exception):
    """One request failed inside a backend; `invalid_request` tells a 400 from a 500."""

    def __init__(self, message: str, kind: str = "server_error") -> None:
        super().__init__(message)
        self.kind = kind
        self.invalid_request = kind == "invalid_request"


def delta_of_event(event: dict) -> GenerationDelta:
    """One streamed engine event, as every backend relays it (GenerationDelta JSON, or `{"error", "kind"}`
    for a request that failed mid-stream), as a delta; an error event raises GenerationFailed."""
    if "error" in event:
        raise GenerationFailed(event["error"], event.get("kind", "server_error"))
    return GenerationDelta.model_validate(event)


def error_kind(exc: BaseException) -> str:
    """A ValueError (pydantic's ValidationError is one) is the request's fault, anything else the server's."""
    return "invalid_request" if isinstance(exc, ValueError) else "server_error"


def choice_seed(seed: int | None, choice: int) -> int | None:
    """The seed choice `choice` of an n-choice request samples with.

    Choice 0 uses the request's seed itself (n=1 and the first of n choices draw alike). Choice j > 0
    uses a 63-bit seed hashed from (seed, j) by numpy's SeedSequence (spawn key j), so choices of
    neighbouring request seeds are unrelated streams (with seed + j, seed 42's choices were seed 41's
    shifted by one) and a client can derive them:
    SeedSequence(abs(seed), spawn_key=(j, seed < 0)).generate_state(1, uint64)[0] masked to 63 bits.
    """
    if seed is None or choice == 0:
        return seed
    import numpy as np

    state = np.random.SeedSequence(abs(seed), spawn_key=(choice, int(seed < 0))).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)
