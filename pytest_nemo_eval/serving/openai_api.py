"""The OpenAI-compatible HTTP front (flask): /v1/completions, /v1/chat/completions, /v1/models, /v1/health,
and vLLM's tokenizer routes /tokenizer_info, /tokenize, /detokenize.

It validates and tokenizes requests, hands GenerationRequests to a backend (serving/backend.py: PyTriton or Ray Serve, the same front for
both) and shapes the results the
way OpenAI clients and evaluation harnesses expect, with `usage` in every
response. Bad requests get a 4xx OpenAI-shaped error naming the parameter;
5xx is only for faults of the server itself.

What the answers hold, as vLLM's: a completion that ends on the EOS token has
finish_reason "stop", the EOS token counts in usage.completion_tokens and has
its logprobs entry (token text `<|endoftext|>` or whatever the tokenizer calls
it), and `text` leaves it out. Echoed prompts keep their special tokens' text,
and every `text_offset` indexes the returned text. Choice j of n samples with
generation.choice_seed(seed, j).

`stream: true` answers Server-Sent Events as OpenAI does: one `data: {chunk}`
per decoded piece (text and, when asked, logprobs), a last chunk with
finish_reason, a usage chunk when stream_options.include_usage, then
`data: [DONE]`. A request the server refuses before generating is an ordinary
4xx/5xx JSON answer; a failure after the first byte is an in-stream
`data: {"error": {...}}` event followed by `data: [DONE]` (vLLM's form, which
the OpenAI SDK raises as APIError). A client that disconnects cancels its
requests in the engine at the next token.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from pytest_nemo_eval.serving.backend import GenerationBackend, Health, ModelInfo
from pytest_nemo_eval.serving.chat.constraints import requested_constraint, tool_constraint
from pytest_nemo_eval.serving.chat.prompt import render_prompt
from pytest_nemo_eval.serving.chat.replies import ReplyShaper, chat_logprobs
from pytest_nemo_eval.serving.generation import (
    GenerationDelta,
    GenerationFailed,
    GenerationRequest,
    GenerationResult,
    StructuredOutput,
    TokenLogprob,
    choice_seed,
)
from pytest_nemo_eval.serving.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    OpenAIError,
    SamplingParams,
    TokenizeRequest,
)
from pytest_nemo_eval.serving.token_text import TokenText
from pytest_nemo_eval.serving.reasoning_parsers import ReasoningParser, choose_reasoning_parser
from pytest_nemo_eval.serving.tool_parsers import ToolParser, choose_parser

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
    # streaming: the deltas of one request as the engine decodes them, and cancelling one by request_id
    stream: Callable[[GenerationRequest], Iterator[GenerationDelta]] | None = None
    cancel: Callable[[str], Any] = lambda request_id: None
    health: Callable[[], Health] = lambda: Health(True)
    tool_parser_name: str | None = None  # --nemo-tool-parser; None: chosen from the chat template; "none": off
    reasoning_parser_name: str | None = None  # --nemo-reasoning-parser, likewise
    ignored_fields: set[str] = field(default_factory=set)  # unknown request fields seen (each logged once)
    _text: TokenText | None = field(default=None, repr=False)
    _formats: tuple[Any, ToolParser | None, ReasoningParser | None] | None = field(default=None, repr=False)

    @classmethod
    def of_backend(cls, backend: GenerationBackend, *, tool_parser: str | None = None,
                   reasoning_parser: str | None = None) -> "ServedModel":
        """The front for `backend`, before it is started (model_id/tokenizer/max_context come with set_model)."""
        served = cls(model_id="", tokenizer=None, max_context=0, generate=backend.generate, stats=backend.stats,
                     stream=backend.stream, cancel=backend.cancel, health=backend.health,
                     tool_parser_name=tool_parser, reasoning_parser_name=reasoning_parser)
        served.output_formats()  # an unknown parser name fails before the model loads
        return served

    def set_model(self, info: ModelInfo) -> None:
        self.model_id, self.tokenizer, self.max_context = info.model_id, info.tokenizer, info.max_context

    def output_formats(self) -> tuple[ToolParser | None, ReasoningParser | None]:
        """The tool-call and reasoning parsers: the ones named at deployment, else the ones the chat template's
        format picks (None: no known format, or named "none")."""
        template = getattr(self.tokenizer, "chat_template", None)
        if self._formats is None or self._formats[0] is not self.tokenizer:
            tools = None if self.tool_parser_name == "none" else choose_parser(self.tool_parser_name, template)
            reasoning = (None if self.reasoning_parser_name == "none"
                         else choose_reasoning_parser(self.reasoning_parser_name, template))
            self._formats = (self.tokenizer, tools, reasoning)
        return self._formats[1], self._formats[2]

    @property
    def tool_parser(self) -> ToolParser | None:
        return self.output_formats()[0]

    def note_ignored(self, body: Any) -> None:
        """Unknown top-level fields are ignored as vLLM ignores them; each name is logged once and reported
        (/v1/health `ignored_request_fields`, and the X-Nemo-Ignored-Fields header the proxy counts)."""
        for name in sorted(set(body.model_extra or ()) - self.ignored_fields):
            self.ignored_fields.add(name)
            LOGGER.warning("ignoring the unknown request field %r (logged once per name)", name)

    @property
    def text(self) -> TokenText:
        if self._text is None or self._text.tokenizer is not self.tokenizer:
            self._text = TokenText(self.tokenizer)
        return self._text


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
                       "/v1/chat/completions, /v1/models, /v1/health, /tokenizer_info, /tokenize and /detokenize.")
        else:
            message = f"{exc.name}: {exc.description}"
        return _openai_error(OpenAIError(status, message, code=exc.name.lower().replace(" ", "_")))

    @app.errorhandler(Exception)
    def _server_fault(exc: Exception) -> tuple[Response, int]:
        LOGGER.exception("unhandled error serving %s", request.path)
        return _openai_error(OpenAIError(500, f"Internal server error ({type(exc).__name__}); see the deployment log."))

    @app.get("/v1/health")
    def health() -> Response | tuple[Response, int]:
        """200 while the backend can answer; 503 with the reason when it cannot (a dead engine, no replica)."""
        state = served.health()
        if not state.ok:
            return jsonify({"status": "unavailable", "model": served.model_id, "detail": state.detail}), 503
        return jsonify({"status": "ok", "model": served.model_id, **served.stats(),
                        "ignored_request_fields": sorted(served.ignored_fields)})

    @app.get("/v1/models")
    def models() -> Response:
        card = {"id": served.model_id, "object": "model", "created": created, "owned_by": "nemo-eval",
                "max_model_len": served.max_context}
        return jsonify({"object": "list", "data": [card]})

    @app.post("/v1/completions")
    def completions() -> Response:
        body = _parse(CompletionRequest)
        served.note_ignored(body)
        prompts = _prompt_ids(body.prompt, served)
        max_tokens = _max_tokens(body.max_tokens, DEFAULT_COMPLETION_MAX_TOKENS, prompts, served)
        asked = [ids for ids in prompts for _ in range(body.n)]  # prompt-major, as OpenAI orders the choices
        structured = _requested_constraint(body)
        requests = [_generation_request(ids, body, max_tokens, body.logprobs, body.echo, choice=i % body.n,
                                        structured=structured)
                    for i, ids in enumerate(asked)]
        if body.stream:
            return _stream_response(served, requests, _CompletionChunks(served, body, asked), prompts, body)
        results = _run(served, requests)
        choices = [_completion_choice(i, ids, result, body, served.text)
                   for i, (ids, result) in enumerate(zip(asked, results))]
        return _json_reply(served, body, {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                                          "created": int(time.time()), "model": served.model_id, "choices": choices,
                                          "usage": _usage(prompts, results)})

    @app.post("/v1/chat/completions")
    def chat_completions() -> Response:
        body = _parse(ChatCompletionRequest)
        served.note_ignored(body)
        shaper = ReplyShaper(body, _tool_parser_for(body, served), served.text, served.tokenizer.eos_id,
                             served.output_formats()[1])
        structured = _chat_constraint(body)
        prompt = render_prompt(served.tokenizer, body.messages, tools=body.tools,
                               add_generation_prompt=body.add_generation_prompt,
                               continue_final_message=body.continue_final_message,
                               template_kwargs=body.chat_template_kwargs)
        prompts = [_check_ids(served.tokenizer.encode(prompt), served, "messages")]
        requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        max_tokens = _max_tokens(requested, None, prompts, served)
        top = (body.top_logprobs or 0) if body.logprobs else None
        requests = [_generation_request(prompts[0], body, max_tokens, top, False, choice=j, structured=structured)
                    for j in range(body.n)]
        if body.stream:
            return _stream_response(served, requests, _ChatChunks(shaper, body), prompts, body)
        results = _run(served, requests)
        choices = [_chat_choice(j, shaper, result, body.logprobs) for j, result in enumerate(results)]
        usage = _usage(prompts, results)
        if shaper.reasoning is not None:
            usage["completion_tokens_details"] = {
                "reasoning_tokens": sum(shaper.reasoning_tokens(r.output_ids) for r in results)}
        return _json_reply(served, body, {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                                          "created": int(time.time()), "model": served.model_id, "choices": choices,
                                          "usage": usage})

    # -- vLLM's tokenizer routes (lm-eval's RemoteTokenizer reads these when given no tokenizer) --
    @app.get("/tokenizer_info")
    def tokenizer_info() -> Response:
        """vLLM's shape: the tokenizer's config keys (tokenizer_class, eos/bos token text, ...) and chat_template."""
        tokenizer = served.tokenizer
        info: dict[str, Any] = {
            "tokenizer_class": type(tokenizer).__name__,
            "name_or_path": served.model_id,
            "eos_token": tokenizer.token_str(tokenizer.eos_id),
            "bos_token": tokenizer.token_str(tokenizer.bos_id) if tokenizer.bos_id is not None else None,
            "model_max_length": served.max_context,
            "vocab_size": tokenizer.vocab_size,
        }
        if getattr(tokenizer, "chat_template", None):
            info["chat_template"] = tokenizer.chat_template
        return jsonify(info)

    @app.post("/tokenize")
    def tokenize() -> Response:
        """{prompt} or {messages}; add_special_tokens=False leaves out a BOS the tokenizer would add."""
        body = _parse(TokenizeRequest)
        tokenizer = served.tokenizer
        if body.messages is not None:
            text = render_prompt(tokenizer, body.messages, tools=body.tools,
                                 add_generation_prompt=body.add_generation_prompt,
                                 continue_final_message=body.continue_final_message,
                                 template_kwargs=body.chat_template_kwargs)
        else:
            text = body.prompt
        ids = tokenizer.encode(text)
        bos = tokenizer.bos_id
        if (not body.add_special_tokens and bos is not None and ids[:1] == [bos]
                and not text.startswith(tokenizer.token_str(bos))):
            ids = ids[1:]
        reply: dict[str, Any] = {"count": len(ids), "max_model_len": served.max_context, "tokens": ids,
                                 "token_strs": [tokenizer.token_str(t) for t in ids] if body.return_token_strs else None}
        return jsonify(reply)

    @app.post("/detokenize")
    def detokenize() -> Response:
        """{tokens} -> {prompt}: the text with special tokens written out, as vLLM's detokenize."""
        body = _parse(DetokenizeRequest)
        vocab = served.tokenizer.vocab_size
        bad = [t for t in body.tokens if not 0 <= t < vocab]
        if bad:
            raise OpenAIError(400, f"Invalid parameter `tokens`: token id {bad[0]} is outside the vocabulary "
                                   f"(0..{vocab - 1}).", param="tokens")
        return jsonify({"prompt": served.text.with_specials(body.tokens)})

    return app


def _tool_parser_for(body: ChatCompletionRequest, served: ServedModel) -> ToolParser | None:
    """The parser of an "auto" tool choice; refused as vLLM refuses auto without a tool-call parser."""
    if body.tool_mode() != "auto":
        return None
    parser = served.tool_parser
    if parser is None:
        raise OpenAIError(
            400, "\"auto\" tool choice needs a tool-call parser, and this checkpoint's chat template shows no known "
                 "tool-call format. Start the deployment with --nemo-tool-parser NAME (hermes, llama3_json, mistral, "
                 "pythonic), or send tool_choice \"required\", a named function, or \"none\".",
            param="tool_choice", code="tool_parser_missing")
    return parser


def _requested_constraint(body: Any) -> StructuredOutput | None:
    return (_requested(body) or (None, None))[1]


def _requested(body: Any) -> tuple[str, StructuredOutput] | None:
    try:
        return requested_constraint(body)
    except ValueError as exc:
        raise OpenAIError(400, f"Invalid structured output: {exc}.", param="response_format") from None


def _chat_constraint(body: ChatCompletionRequest) -> StructuredOutput | None:
    """The one constraint on a chat reply's tokens: a forced tool call, or a requested structured output."""
    requested = _requested(body)
    forced = tool_constraint(body.tools or [], body.tool_choice, body.parallel_tool_calls)
    if forced is not None and requested is not None:
        raise OpenAIError(400, f"tool_choice {body.tool_choice if isinstance(body.tool_choice, str) else 'naming a function'} "
                               f"constrains the output to a tool call, and `{requested[0]}` constrains it too; send one "
                               "of them.", param=requested[0])
    return forced if forced is not None else (requested[1] if requested else None)


def _json_reply(served: ServedModel, body: SamplingParams, payload: dict[str, Any]) -> Response:
    response = jsonify(payload)
    if body.model_extra:
        response.headers["X-Nemo-Ignored-Fields"] = ",".join(sorted(body.model_extra))
    return response


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
                        echo: bool, *, choice: int, structured: StructuredOutput | None = None) -> GenerationRequest:
    """Choice j of n draws with choice_seed(seed, j): reproducible, and unrelated to other seeds' choices."""
    return GenerationRequest(prompt_ids=ids, max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                             top_k=body.top_k, seed=choice_seed(body.seed, choice), stop=body.stop_list(),
                             logprobs=logprobs, echo=echo, ignore_eos=body.ignore_eos,
                             request_id=uuid.uuid4().hex, structured=structured)


def _run(served: ServedModel, requests: list[GenerationRequest]) -> list[GenerationResult]:
    try:
        return served.generate(requests)
    except GenerationFailed as exc:
        if exc.invalid_request:
            raise OpenAIError(400, str(exc)) from None
        raise OpenAIError(500, f"Generation failed: {exc}") from None


def _chat_choice(index: int, shaper: ReplyShaper, result: GenerationResult, logprobs: bool | None) -> dict[str, Any]:
    reply = shaper.reply(result)
    choice: dict[str, Any] = {"index": index, "message": reply.message(shaper.include_reasoning),
                              "finish_reason": reply.finish_reason,
                              "logprobs": None}
    if reply.stop_reason is not None:
        choice["stop_reason"] = reply.stop_reason
    if logprobs:
        choice["logprobs"] = chat_logprobs(result.output_logprobs or [])
    return choice


def _completion_choice(index: int, prompt_ids: list[int], result: GenerationResult, body: CompletionRequest,
                       text: TokenText) -> dict[str, Any]:
    # the prompt's text: echoed, and where the output's text_offsets start; decoded only when either is asked
    prompt_text = text.with_specials(prompt_ids) if body.echo or body.logprobs is not None else ""
    choice: dict[str, Any] = {"index": index, "text": (prompt_text if body.echo else "") + result.text,
                              "finish_reason": result.finish_reason, "logprobs": None}
    if body.logprobs is not None:
        entries: list[TokenLogprob] = []
        offsets: list[int] = []
        if body.echo:
            entries += _prompt_entries(prompt_ids, result.prompt_logprobs, text.tokenizer)
            offsets += text.offsets(prompt_ids, specials=True)
        output = result.output_logprobs or []
        entries += output
        offsets += text.offsets([e.token_id for e in output], specials=False, start=len(prompt_text))
        choice["logprobs"] = _logprobs_block(entries, offsets)
    return choice


def _prompt_entries(prompt_ids: list[int], scored: list[TokenLogprob | None] | None, tokenizer) -> list[TokenLogprob]:
    """The echoed prompt tokens; the first has no logprob (nothing precedes it)."""
    scored = scored or [None] * len(prompt_ids)
    return [entry if entry is not None else _unscored(token_id, tokenizer) for token_id, entry in zip(prompt_ids, scored)]


def _unscored(token_id: int, tokenizer) -> TokenLogprob:
    return TokenLogprob.model_construct(token_id=token_id, token=tokenizer.token_str(token_id), logprob=None, top=None)


def _logprobs_block(entries: list[TokenLogprob], offsets: list[int]) -> dict[str, list]:
    """OpenAI's completions logprobs: tokens, token_logprobs, top_logprobs, text_offset."""
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


# -- streaming (stream: true) ----------------------------------------------------------------------
class _CompletionChunks:
    """Deltas of /v1/completions choices as `text_completion` chunks; text_offset continues across chunks."""

    object = "text_completion"

    def __init__(self, served: ServedModel, body: CompletionRequest, asked: list[list[int]]) -> None:
        self.text, self.body, self.asked = served.text, body, asked
        self.generated: dict[int, list[int]] = {}
        self.prompt_texts: dict[int, str] = {}

    def choices(self, index: int, delta: GenerationDelta) -> list[dict[str, Any]]:
        first = index not in self.generated
        ids = self.generated.setdefault(index, [])
        prompt_ids = self.asked[index]
        if first:  # decoded only when echoed or indexed by text_offset
            wanted = self.body.echo or self.body.logprobs is not None
            self.prompt_texts[index] = self.text.with_specials(prompt_ids) if wanted else ""
        prompt_text = self.prompt_texts[index]
        echoed = self.body.echo and first
        choice: dict[str, Any] = {"index": index, "text": (prompt_text if echoed else "") + delta.text,
                                  "logprobs": None, "finish_reason": delta.finish_reason}
        new_ids = [e.token_id for e in delta.logprobs or []]
        if self.body.logprobs is not None:
            entries: list[TokenLogprob] = []
            offsets: list[int] = []
            if echoed:
                entries += _prompt_entries(prompt_ids, delta.prompt_logprobs, self.text.tokenizer)
                offsets += self.text.offsets(prompt_ids, specials=True)
            entries += delta.logprobs or []
            all_offsets = self.text.offsets([*ids, *new_ids], specials=False, start=len(prompt_text))
            offsets += all_offsets[len(ids):]
            choice["logprobs"] = _logprobs_block(entries, offsets)
        ids.extend(delta.output_ids)
        return [choice]

    def usage_details(self) -> dict[str, Any]:
        return {}


class _ChatChunks:
    """Deltas of /v1/chat/completions choices as `chat.completion.chunk`s (serving/chat/replies.py shapes them)."""

    object = "chat.completion.chunk"

    def __init__(self, shaper: ReplyShaper, body: ChatCompletionRequest) -> None:
        self.shaper, self.body = shaper, body
        self.streams: dict[int, Any] = {}

    def choices(self, index: int, delta: GenerationDelta) -> list[dict[str, Any]]:
        stream = self.streams.get(index)
        if stream is None:
            stream = self.streams[index] = self.shaper.stream(bool(self.body.logprobs))
        return stream.feed(index, delta)

    def usage_details(self) -> dict[str, Any]:
        if self.shaper.reasoning is None:
            return {}
        return {"completion_tokens_details": {
            "reasoning_tokens": sum(self.shaper.reasoning_tokens(s.ids) for s in self.streams.values())}}


def _sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _chunk_frame(head: dict[str, Any], include_usage: bool) -> tuple[bytes, bytes]:
    """The bytes around a chunk's one choice, encoded once per stream: `_sse({**head, "choices": [choice]})`
    (with "usage": null when include_usage) is prefix + the choice's JSON + suffix, byte for byte, and the
    head is the same in every chunk."""
    prefix = _sse(head)[: -len(b"}\n\n")] + b',"choices":['
    return prefix, (b'],"usage":null}\n\n' if include_usage else b"]}\n\n")


def _failure(exc: Exception) -> OpenAIError:
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, GenerationFailed) and exc.invalid_request:
        return OpenAIError(400, str(exc))
    if isinstance(exc, GenerationFailed):
        return OpenAIError(500, f"Generation failed: {exc}")
    LOGGER.error("stream failed: %r", exc)
    return OpenAIError(500, f"Generation failed ({type(exc).__name__}: {exc}); see the deployment log.")


def _stream_response(served: ServedModel, requests: list[GenerationRequest], chunks, prompts: list[list[int]],
                     body: SamplingParams) -> Response:
    """An SSE response for `requests` (one per choice, in choice order)."""
    if served.stream is None:
        raise OpenAIError(400, "This server cannot stream; send stream=false.", param="stream")
    events = _merged_deltas(served, requests)
    first = next(events)
    if isinstance(first[1], Exception):  # refused before the first byte: an ordinary HTTP error
        events.close()
        raise _failure(first[1])
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    head = {"id": f"{'chatcmpl' if isinstance(chunks, _ChatChunks) else 'cmpl'}-{uuid.uuid4().hex}",
            "object": chunks.object, "created": int(time.time()), "model": served.model_id}

    prefix, suffix = _chunk_frame(head, include_usage)
    dumps = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps' own encoder, without its per-call set-up

    def generate() -> Iterator[bytes]:
        completion_tokens = 0
        failed = False
        try:
            for index, item in _chain_first(first, events):
                if isinstance(item, Exception):
                    failed = True
                    yield _sse(_failure(item).body())
                    break
                completion_tokens += len(item.output_ids)
                for choice in chunks.choices(index, item):
                    yield prefix + dumps(choice).encode() + suffix
            if include_usage and not failed:
                prompt_tokens = sum(len(ids) for ids in prompts)
                details = chunks.usage_details()
                yield _sse({**head, "choices": [], "usage": {
                    "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens, **details}})
            yield b"data: [DONE]\n\n"
        finally:
            events.close()  # a client gone mid-stream: cancels what still runs

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if body.model_extra:
        headers["X-Nemo-Ignored-Fields"] = ",".join(sorted(body.model_extra))
    return Response(generate(), mimetype="text/event-stream", headers=headers)


def _chain_first(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _merged_deltas(served: ServedModel, requests: list[GenerationRequest]) -> Iterator[tuple[int, Any]]:
    """(choice index, delta or the exception that ended it) as they come, from every request; closing it
    cancels the requests still running. One request is read in this thread; several, one thread each."""
    if len(requests) == 1:
        yield from _one_stream(served, 0, requests[0], threading.Event())
        return
    out: queue.Queue = queue.Queue()
    stop = threading.Event()
    done = object()

    def pump(index: int, req: GenerationRequest) -> None:
        try:
            for item in _one_stream(served, index, req, stop):
                out.put(item)
        finally:
            out.put(done)

    threads = [threading.Thread(target=pump, args=(i, r), daemon=True, name="nemo-eval-stream")
               for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = out.get()
            if item is done:
                running -= 1
            else:
                yield item
                if isinstance(item[1], Exception):
                    return
    finally:
        stop.set()
        for req in requests:
            served.cancel(req.request_id)


def _one_stream(served: ServedModel, index: int, req: GenerationRequest, stop: threading.Event):
    stream = served.stream(req)
    finished = False
    try:
        for delta in stream:
            if stop.is_set():
                break
            yield index, delta
            if delta.finish_reason is not None:
                finished = True
        if not finished and not stop.is_set():
            yield index, RuntimeError("the generation stream ended before its last token")
            finished = True
    except Exception as exc:  # noqa: BLE001 - every failure becomes an in-stream error event
        finished = True
        yield index, exc
    finally:
        if not finished:
            served.cancel(req.request_id)
        close = getattr(stream, "close", None)
        if close is not None:
            close()
