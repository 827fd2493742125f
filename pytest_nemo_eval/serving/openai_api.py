"""The OpenAI-compatible HTTP front (flask): /v1/completions, /v1/chat/completions, /v1/models, /v1/health.

It validates and tokenizes requests, hands GenerationRequests to a backend (in
a deployment: Triton through TritonGenerateClient) and shapes the results the
way OpenAI clients and evaluation harnesses expect, with `usage` in every
response. Bad requests get a 4xx OpenAI-shaped error naming the parameter;
5xx is only for faults of the server itself.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from pytest_nemo_eval.serving.engine import GenerationRequest, GenerationResult, TokenLogprob
from pytest_nemo_eval.serving.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    OpenAIError,
    SamplingParams,
)
from pytest_nemo_eval.serving.triton_client import GenerationFailed

LOGGER = logging.getLogger(__name__)
DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


@dataclass
class ServedModel:
    """What the HTTP front needs from the model behind it."""

    model_id: str
    tokenizer: Any  # checkpoint.tokenizer.Tokenizer
    max_context: int
    generate: Callable[[list[GenerationRequest]], list[GenerationResult]]
    stats: Callable[[], dict[str, Any]] = dict


def create_app(served: ServedModel) -> Flask:
    """The flask app serving `served` under /v1."""
    app = Flask("nemo-eval-openai")
    created = int(time.time())

    @app.errorhandler(OpenAIError)
    def _openai_error(exc: OpenAIError) -> tuple[Response, int]:
        return jsonify(exc.body()), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        if status == 404:
            message = (f"No route {request.method} {request.path}; this server has /v1/completions, "
                       "/v1/chat/completions, /v1/models and /v1/health.")
        else:
            message = f"{exc.name}: {exc.description}"
        return _openai_error(OpenAIError(status, message, code=exc.name.lower().replace(" ", "_")))

    @app.errorhandler(Exception)
    def _server_fault(exc: Exception) -> tuple[Response, int]:
        LOGGER.exception("unhandled error serving %s", request.path)
        return _openai_error(OpenAIError(500, f"Internal server error ({type(exc).__name__}); see the deployment log."))

    @app.get("/v1/health")
    def health() -> Response:
        return jsonify({"status": "ok", "model": served.model_id, **served.stats()})

    @app.get("/v1/models")
    def models() -> Response:
        card = {"id": served.model_id, "object": "model", "created": created, "owned_by": "nemo-eval",
                "max_model_len": served.max_context}
        return jsonify({"object": "list", "data": [card]})

    @app.post("/v1/completions")
    def completions() -> Response:
        body = _parse(CompletionRequest)
        prompts = _prompt_ids(body.prompt, served)
        max_tokens = _max_tokens(body.max_tokens, DEFAULT_COMPLETION_MAX_TOKENS, prompts, served)
        asked = [ids for ids in prompts for _ in range(body.n)]  # prompt-major, as OpenAI orders the choices
        requests = [_generation_request(ids, body, max_tokens, body.logprobs, body.echo, choice=i % body.n)
                    for i, ids in enumerate(asked)]
        results = _run(served, requests)
        choices = [_completion_choice(i, ids, result, body, served.tokenizer)
                   for i, (ids, result) in enumerate(zip(asked, results))]
        return jsonify({"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                        "model": served.model_id, "choices": choices, "usage": _usage(prompts, results)})

    @app.post("/v1/chat/completions")
    def chat_completions() -> Response:
        body = _parse(ChatCompletionRequest)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        tokenizer = served.tokenizer
        try:
            prompt = tokenizer.apply_chat_template(messages)  # transformers' own rendering when the model has one
        except Exception as exc:  # jinja raises many types; any of them means these messages do not fit the template
            raise OpenAIError(400, f"The chat template cannot render these messages: {exc}", param="messages") from None
        prompts = [_check_ids(tokenizer.encode(prompt), served, "messages")]
        requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        max_tokens = _max_tokens(requested, None, prompts, served)
        top = (body.top_logprobs or 0) if body.logprobs else None
        results = _run(served, [_generation_request(prompts[0], body, max_tokens, top, False, choice=j)
                                for j in range(body.n)])
        choices = [_chat_choice(j, result, body.logprobs) for j, result in enumerate(results)]
        return jsonify({"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                        "model": served.model_id, "choices": choices, "usage": _usage(prompts, results)})

    return app


def _parse(model: type[SamplingParams]) -> Any:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise OpenAIError(400, "The request body must be a JSON object (Content-Type: application/json); "
                               "it could not be parsed as one.", code="invalid_json")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"][:1]) or None
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        raise OpenAIError(400, f"Invalid parameter `{where}`: {message}.", param=param) from None


def _check_ids(ids: list[int], served: ServedModel, param: str) -> list[int]:
    vocab = served.tokenizer.vocab_size
    bad = [t for t in ids if not 0 <= t < vocab]
    if bad:
        raise OpenAIError(400, f"Token id {bad[0]} is outside the vocabulary (0..{vocab - 1}).", param=param)
    if not ids:
        raise OpenAIError(400, "The prompt is empty; send at least one token.", param=param)
    if len(ids) > served.max_context:
        raise OpenAIError(400, f"The prompt has {len(ids)} tokens, more than this model's context of "
                               f"{served.max_context}; shorten it.", param=param, code="context_length_exceeded")
    return ids


def _prompt_ids(prompt: str | list, served: ServedModel) -> list[list[int]]:
    """Every prompt form OpenAI allows, as token-id lists."""
    if isinstance(prompt, str):
        items: list = [prompt]
    elif all(isinstance(p, int) for p in prompt):
        items = [prompt]
    else:
        items = list(prompt)
    return [_check_ids(served.tokenizer.encode(p) if isinstance(p, str) else list(p), served, "prompt") for p in items]


def _max_tokens(requested: int | None, default: int | None, prompts: list[list[int]], served: ServedModel) -> int:
    """The number of tokens to generate: as asked (refused if it overflows the context) or what fits."""
    room = served.max_context - max(len(ids) for ids in prompts)
    if requested is None:
        return room if default is None else min(default, room)
    if requested > room:
        raise OpenAIError(400, f"max_tokens={requested} plus the prompt's {served.max_context - room} tokens exceeds "
                               f"this model's context of {served.max_context}; ask for at most {room}.",
                          param="max_tokens", code="context_length_exceeded")
    return requested


def _generation_request(ids: list[int], body: SamplingParams, max_tokens: int, logprobs: int | None,
                        echo: bool, *, choice: int) -> GenerationRequest:
    """Choice j of n draws with seed + j, so a seeded request's choices differ yet stay reproducible."""
    seed = None if body.seed is None else body.seed + choice
    return GenerationRequest(prompt_ids=ids, max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                             top_k=body.top_k, seed=seed, stop=body.stop_list(), logprobs=logprobs, echo=echo,
                             ignore_eos=body.ignore_eos)


def _run(served: ServedModel, requests: list[GenerationRequest]) -> list[GenerationResult]:
    try:
        return served.generate(requests)
    except GenerationFailed as exc:
        if exc.invalid_request:
            raise OpenAIError(400, str(exc)) from None
        raise OpenAIError(500, f"Generation failed: {exc}") from None


def _chat_choice(index: int, result: GenerationResult, logprobs: bool | None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "message": {"role": "assistant", "content": result.text},
                              "finish_reason": result.finish_reason, "logprobs": None}
    if logprobs:
        choice["logprobs"] = {"content": [
            {"token": lp.token, "logprob": lp.logprob,
             "top_logprobs": [{"token": t, "logprob": v} for t, v in lp.top.items()]}
            for lp in result.output_logprobs or []]}
    return choice


def _completion_choice(index: int, prompt_ids: list[int], result: GenerationResult, body: CompletionRequest,
                       tokenizer) -> dict[str, Any]:
    prompt_text = tokenizer.decode(prompt_ids) if body.echo else ""
    choice: dict[str, Any] = {"index": index, "text": prompt_text + result.text, "finish_reason": result.finish_reason,
                              "logprobs": None}
    if body.logprobs is not None:
        entries: list[TokenLogprob | None] = []
        if body.echo:
            entries += _prompt_entries(prompt_ids, result, tokenizer)
        entries += result.output_logprobs or []
        choice["logprobs"] = _logprobs_block(entries, start_offset=0 if body.echo else len(tokenizer.decode(prompt_ids)))
    return choice


def _prompt_entries(prompt_ids: list[int], result: GenerationResult, tokenizer) -> list[TokenLogprob | None]:
    """The echoed prompt tokens; the first has no logprob (nothing precedes it)."""
    scored = result.prompt_logprobs or [None] * len(prompt_ids)
    return [entry if entry is not None else _unscored(token_id, tokenizer) for token_id, entry in zip(prompt_ids, scored)]


def _unscored(token_id: int, tokenizer) -> TokenLogprob:
    return TokenLogprob.model_construct(token_id=token_id, token=tokenizer.token_str(token_id), logprob=None, top=None)


def _logprobs_block(entries: list[TokenLogprob], start_offset: int) -> dict[str, list]:
    """OpenAI's completions logprobs: tokens, token_logprobs, top_logprobs, text_offset."""
    offsets, position = [], start_offset
    for entry in entries:
        offsets.append(position)
        position += len(entry.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [e.top for e in entries],
        "text_offset": offsets,
    }


def _usage(prompts: list[list[int]], results: list[GenerationResult]) -> dict[str, int]:
    prompt_tokens = sum(len(ids) for ids in prompts)
    completion_tokens = sum(len(r.output_ids) for r in results)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
