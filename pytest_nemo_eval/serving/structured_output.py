"""Structured outputs: a StructuredOutput compiled by the grammar engine, and the token mask of each decode step.

The grammar engine is llguidance (vLLM's `guidance` backend): it compiles JSON
schemas, regular expressions, Lark/GBNF grammars and lists of choices against the
served tokenizer's vocabulary and, at each step, fills a bitmask of the tokens
that keep the output inside the language. Nothing here turns a schema into an
automaton itself.

Usage (the engine does this; the HTTP front only builds the StructuredOutput):

    compiled = compile_constraint(spec, tokenizer)   # StructuredOutputError (a ValueError: HTTP 400)
    decoding = ConstrainedDecoding(compiled)          # one per request, fresh state
    logits.masked_fill(~decoding.allowed_mask(vocab_size), -inf); ...; decoding.accept(token)
    decoding.is_finished()                            # the grammar is complete: the request stops

Choices of ours, each overridable by the client where it says so:
- JSON is compact: no free whitespace between tokens (llguidance's default allows any
  amount, and a model that keeps choosing a space or newline never finishes; vLLM has
  `disable-any-whitespace` for that). A schema may set `"x-guidance": {"whitespace_flexible": true}`.
- Unsupported JSON-schema keywords are refused (llguidance names them), not ignored, so an
  output is never silently held to less than the client asked; `"x-guidance": {"lenient": true}`
  in the schema ignores them instead.
- `grammar` takes what vLLM's guidance backend takes: a Lark grammar in llguidance's dialect or GBNF.

Compiled grammars are cached per tokenizer (an LRU of recent constraints), and each request
gets a deep copy of the compiled matcher, so 16 requests with one schema compile it once.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections import OrderedDict
from typing import Any

import llguidance
import llguidance.numpy as llg_numpy
import numpy as np
import torch

from .generation import StructuredOutput

JSON_DEFAULTS: dict[str, Any] = {"whitespace_flexible": False}
CACHED_CONSTRAINTS = 64  # compiled constraints kept per tokenizer
GRAMMAR_DOCS = "https://github.com/guidance-ai/llguidance/blob/main/docs/syntax.md"


class StructuredOutputError(ValueError):
    """A structured-output constraint that cannot be compiled for this model: the request's fault (HTTP 400)."""


class _TokenizerEntry:
    """The llguidance tokenizer of one served tokenizer, and its cache of compiled constraints."""

    def __init__(self, ll_tokenizer: llguidance.LLTokenizer) -> None:
        self.ll_tokenizer = ll_tokenizer
        self.compiled: OrderedDict[str, CompiledConstraint] = OrderedDict()


_ENTRIES: weakref.WeakKeyDictionary[Any, _TokenizerEntry] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _entry(tokenizer) -> _TokenizerEntry:
    with _LOCK:
        entry = _ENTRIES.get(tokenizer)
    if entry is not None:
        return entry
    hf = getattr(tokenizer, "hf", None)
    if hf is None:
        raise StructuredOutputError(
            f"Structured outputs (response_format json_schema / json_object, guided_*, tool_choice required or named) "
            f"need a Hugging Face fast tokenizer to build the grammar engine's token table, and this model's tokenizer "
            f"is {type(tokenizer).__name__}; send the request without the constraint, or serve the checkpoint with "
            "its Hugging Face tokenizer files (tokenizer.json) in context/nemo_tokenizer/."
        )
    import llguidance.hf

    try:
        ll_tokenizer = llguidance.hf.from_tokenizer(hf, eos_token=tokenizer.eos_id)
    except Exception as exc:  # a slow (Python) tokenizer, or one llguidance cannot read
        raise StructuredOutputError(
            f"The grammar engine (llguidance) cannot read this model's tokenizer ({type(exc).__name__}: {exc}), so "
            "structured outputs cannot be enforced; send the request without the constraint."
        ) from None
    with _LOCK:
        return _ENTRIES.setdefault(tokenizer, _TokenizerEntry(ll_tokenizer))


def llg_tokenizer(tokenizer) -> llguidance.LLTokenizer:
    """llguidance's tokenizer for a served tokenizer (checkpoint.tokenizer.HFTokenizer), built once and cached."""
    return _entry(tokenizer).ll_tokenizer


def _one_paragraph(message: str) -> str:
    """llguidance's message without its caret pointers and echoed source lines, on one line."""
    kept = [line.strip() for line in message.splitlines()
            if line.strip() and not re.fullmatch(r"[\s^~]*", line) and not re.match(r"\s*\d+ \|", line)]
    return " ".join(kept).rstrip(".")


def _what_and_fix(spec: StructuredOutput) -> tuple[str, str]:
    if spec.json_schema is not None:
        return ("The JSON schema of this request", "Remove or rewrite that construct (llguidance's supported subset: "
                "https://github.com/guidance-ai/llguidance/blob/main/docs/json_schema.md), or add "
                '"x-guidance": {"lenient": true} to the schema\'s top level to have unimplemented keywords ignored '
                "(the output is then not held to them).")
    if spec.regex is not None:
        return ("The regex of this request", "Rewrite it in the syntax of Rust's regex crate (no look-around, no "
                "backreferences, no anchors needed: the whole output must match).")
    if spec.choice is not None:
        return "The choice list of this request", "Send a non-empty list of strings."
    return ("The grammar of this request", f"Send a Lark grammar in llguidance's dialect with a `start` rule "
            f"({GRAMMAR_DOCS}) or a GBNF grammar with a `root` rule.")


def _grammar_text(spec: StructuredOutput) -> str:
    """The llguidance grammar of a constraint (not yet checked against a tokenizer)."""
    if spec.json_schema is not None:
        return llguidance.LLMatcher.grammar_from_json_schema(spec.json_schema, defaults=JSON_DEFAULTS)
    if spec.regex is not None:
        return llguidance.LLMatcher.grammar_from_regex(spec.regex)
    if spec.choice is not None:
        if not spec.choice:
            raise ValueError("the list of choices is empty")
        return llguidance.grammar_from("choice", spec.choice)  # Lark alternatives of JSON-escaped literals
    return llguidance.grammar_from("grammar", spec.grammar)  # Lark, or GBNF converted to Lark


class CompiledConstraint:
    """A constraint compiled against one tokenizer; `new_matcher()` gives a request its own fresh state."""

    def __init__(self, spec: StructuredOutput, grammar: str, ll_tokenizer: llguidance.LLTokenizer,
                 matcher: llguidance.LLMatcher, eos_id: int) -> None:
        self.spec = spec
        self.grammar = grammar
        self.ll_tokenizer = ll_tokenizer
        self.eos_id = eos_id
        self._template = matcher
        self._lock = threading.Lock()

    @property
    def grammar_vocab_size(self) -> int:
        """The vocabulary the grammar engine masks over (may differ from the model's: see allowed_mask)."""
        return self.ll_tokenizer.vocab_size

    def new_matcher(self) -> llguidance.LLMatcher:
        with self._lock:
            return self._template.deep_copy()


def compile_constraint(spec: StructuredOutput, tokenizer) -> CompiledConstraint:
    """Compile `spec` for `tokenizer` (cached); StructuredOutputError (a ValueError) names what cannot be compiled."""
    entry = _entry(tokenizer)
    key = json.dumps(spec.model_dump(exclude_none=True), sort_keys=True)
    with _LOCK:
        compiled = entry.compiled.get(key)
        if compiled is not None:
            entry.compiled.move_to_end(key)
            return compiled
    what, fix = _what_and_fix(spec)
    try:
        grammar = _grammar_text(spec)
    except Exception as exc:  # grammar_from_json_schema: not a JSON object; GBNF conversion; empty choices
        raise StructuredOutputError(f"{what} cannot be compiled: {_one_paragraph(str(exc))}. {fix}") from None
    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, entry.ll_tokenizer)
    matcher = None if failed else llguidance.LLMatcher(entry.ll_tokenizer, grammar, log_level=0)
    if failed or matcher.is_error():
        reason = messages[0] if failed else matcher.get_error()
        raise StructuredOutputError(
            f"{what} cannot be enforced by the grammar engine (llguidance): {_one_paragraph(reason)}. {fix}"
        )
    compiled = CompiledConstraint(spec, grammar, entry.ll_tokenizer, matcher, tokenizer.eos_id)
    with _LOCK:
        entry.compiled[key] = compiled
        while len(entry.compiled) > CACHED_CONSTRAINTS:
            entry.compiled.popitem(last=False)
    return compiled


class ConstrainedDecoding:
    """One request's position in its grammar: the tokens allowed next, and the tokens it chose.

    Used by one thread (the engine's scheduler). `allowed_mask` may be called any number of times
    per step; `accept` moves to the next step."""

    def __init__(self, compiled: CompiledConstraint) -> None:
        self.compiled = compiled
        self._matcher = compiled.new_matcher()
        self._bitmask = llg_numpy.allocate_token_bitmask(1, compiled.grammar_vocab_size)

    def allowed_mask(self, vocab_size: int) -> torch.Tensor:
        """A bool tensor of `vocab_size` (the model's real vocabulary), True where the grammar allows the token.

        The grammar engine's vocabulary can be shorter (ids it does not know are never allowed) or longer
        (ids the model cannot produce are dropped) than the model's."""
        llg_numpy.fill_next_token_bitmask(self._matcher, self._bitmask)
        if self._matcher.is_error():
            raise RuntimeError(f"The structured-output grammar failed: {self._matcher.get_error()}")
        # bit j of 32-bit word w is token 32*w + j: little-endian bytes, least significant bit first
        bits = np.unpackbits(self._bitmask[0].astype("<i4", copy=False).view(np.uint8), bitorder="little")
        allowed = np.zeros(vocab_size, dtype=bool)
        known = min(vocab_size, bits.size, self.compiled.grammar_vocab_size)
        allowed[:known] = bits[:known]
        return torch.from_numpy(allowed)

    def accept(self, token_id: int) -> None:
        """Advance past the chosen token; RuntimeError when the grammar does not allow it."""
        if not self._matcher.consume_token(token_id):
            raise RuntimeError(
                f"Token {token_id} is not allowed by the structured-output grammar here "
                f"({self._matcher.get_error() or 'no detail'})."
            )

    def is_finished(self) -> bool:
        """True once the grammar is complete and allows nothing more but the end of sequence."""
        return self._matcher.is_stopped() and not self._matcher.is_error()

    def error(self) -> str:
        return self._matcher.get_error()
