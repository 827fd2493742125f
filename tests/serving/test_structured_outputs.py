"""Structured outputs enforced in the engine (serving/structured_output.py + engine.py), on the demo checkpoint.

Oracles nobody here wrote: `jsonschema` validates JSON replies, Python's `re` checks regex and grammar
replies, and llguidance's own byte-per-token API (`compute_logit_bias`) checks the mask we unpack from its
bitmask. The schemas bound every field (string patterns, integer ranges, maxItems), so every reply the
grammar allows is shorter than max_tokens and must end with "stop" whatever a demo answers: the
assertions hold for any demo, trained well or not, including prompts it was never trained on.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch

from pytest_nemo_eval.serving.engine import GenerationEngine, GenerationRequest
from pytest_nemo_eval.serving.generation import StructuredOutput, error_kind
from pytest_nemo_eval.serving.structured_output import (
    ConstrainedDecoding,
    StructuredOutputError,
    compile_constraint,
)

PROMPTS = ["12+34=", "rev abc=", "<|user|>Describe a person as JSON.\n<|assistant|>"]

WORD = {"type": "string", "pattern": "^[a-z]{1,8}$"}
SMALL = {"type": "integer", "minimum": 0, "maximum": 199}
SCHEMAS = {
    "object_required_fields": {
        "type": "object",
        "properties": {"name": WORD, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                       "color": {"enum": ["red", "green", "blue"]}},
        "required": ["name", "age", "color"], "additionalProperties": False,
    },
    "array_min_items": {"type": "array", "items": SMALL, "minItems": 2, "maxItems": 4},
    "nested": {
        "type": "object",
        "properties": {
            "sum": {"type": "object", "properties": {"a": SMALL, "b": SMALL, "total": SMALL},
                    "required": ["a", "b", "total"], "additionalProperties": False},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"enum": ["x", "y", "z"]}, "minItems": 1, "maxItems": 3},
        },
        "required": ["sum", "ok", "tags"], "additionalProperties": False,
    },
}
# Each schema above allows replies of at most ~90 characters (compact JSON, bounded fields); a token is at
# least one byte of text, so this many tokens always let a reply finish.
MAX_TOKENS = 400


@pytest.fixture(scope="module")
def engine(direct):
    engine = GenerationEngine(direct, slots=8)
    yield engine
    engine.close()


def _request(engine, prompt: str, structured: StructuredOutput | None = None, **options) -> GenerationRequest:
    return GenerationRequest(prompt_ids=engine.tokenizer.encode(prompt), structured=structured, **options)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_schema_replies_validate_for_every_prompt(engine, name):
    schema = SCHEMAS[name]
    spec = StructuredOutput(json_schema=schema)
    requests = [_request(engine, p, spec, max_tokens=MAX_TOKENS) for p in PROMPTS]
    for result in engine.generate(requests):
        assert result.finish_reason == "stop", result.text
        jsonschema.validate(json.loads(result.text), schema)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_replies_validate_too(engine, seed):
    schema = SCHEMAS["nested"]
    requests = [_request(engine, p, StructuredOutput(json_schema=schema), max_tokens=MAX_TOKENS,
                         temperature=1.5, top_k=50, top_p=0.95, seed=seed) for p in PROMPTS]
    for result in engine.generate(requests):
        assert result.finish_reason == "stop", result.text
        jsonschema.validate(json.loads(result.text), schema)


@pytest.mark.parametrize("schema", [{}, {"type": "object"}])
def test_json_mode_gives_json(engine, schema):
    """JSON mode is unbounded (a model may write one string forever), so a reply cut by max_tokens is allowed;
    one that ends is JSON (an object for {"type": "object"}), and every reply opens as one."""
    requests = [_request(engine, p, StructuredOutput(json_schema=schema), max_tokens=64, temperature=t, seed=3)
                for p in PROMPTS for t in (0.0, 1.0)]
    for result in engine.generate(requests):
        if schema:
            assert result.text.startswith("{")
        if result.finish_reason == "stop":
            jsonschema.validate(json.loads(result.text), schema)


@pytest.mark.parametrize("pattern", [r"[0-9]{1,3}(\.[0-9]{2})?", r"(yes|no);[a-c]{2}", r"\(\d\)[A-Z]"])
def test_regex_replies_match(engine, pattern):
    requests = [_request(engine, p, StructuredOutput(regex=pattern), max_tokens=40, temperature=t, seed=5)
                for p in PROMPTS for t in (0.0, 1.0)]
    for result in engine.generate(requests):
        assert result.finish_reason == "stop", result.text
        assert re.fullmatch(pattern, result.text), result.text


def test_choice_replies_are_one_of_the_choices_quotes_and_unicode_included(engine):
    choices = ['say "yes"', "no\\way", "café", "x\ny", "42"]
    requests = [_request(engine, p, StructuredOutput(choice=choices), max_tokens=40, temperature=t, seed=s)
                for p in PROMPTS for t, s in ((0.0, None), (1.0, 1), (1.0, 2))]
    for result in engine.generate(requests):
        assert result.finish_reason == "stop" and result.text in choices, result.text


def test_lark_and_gbnf_grammars(engine):
    lark = 'start: num "+" num "=" num\nnum: /[0-9]{1,2}/'
    gbnf = 'root ::= "(" [a-c] ")" ("!" | "?")'
    for grammar, pattern in ((lark, r"\d{1,2}\+\d{1,2}=\d{1,2}"), (gbnf, r"\([a-c]\)[!?]")):
        requests = [_request(engine, p, StructuredOutput(grammar=grammar), max_tokens=40) for p in PROMPTS]
        for result in engine.generate(requests):
            assert result.finish_reason == "stop" and re.fullmatch(pattern, result.text), result.text


def test_constrained_rows_leave_their_batch_neighbours_as_they_are_alone(engine):
    """Masks are per row: greedy unconstrained requests decode the same beside constrained ones, and a
    constrained request decodes the same beside others as alone."""
    plain = [_request(engine, p, max_tokens=12, logprobs=2) for p in ("12+34=", "rev abcd=", "7")]
    constrained = [_request(engine, p, StructuredOutput(json_schema=SCHEMAS["nested"]), max_tokens=MAX_TOKENS,
                            logprobs=2) for p in ("rev abc=", "55+11=")]
    batch = [plain[0], constrained[0], plain[1], constrained[1], plain[2]]
    for request, in_batch in zip(batch, engine.generate(batch)):
        (alone,) = engine.generate([request])
        assert in_batch.output_ids == alone.output_ids and in_batch.text == alone.text
        assert in_batch.finish_reason == alone.finish_reason
        # a long constrained row sees the batch shrink around it (other shapes, other fp32 rounding): ~2e-4
        tolerance = 1e-5 if request.structured is None else 1e-3
        assert torch.allclose(torch.tensor([e.logprob for e in in_batch.output_logprobs]),
                              torch.tensor([e.logprob for e in alone.output_logprobs]), atol=tolerance)


def test_logprobs_of_a_constrained_reply_are_the_models_raw_ones(engine):
    """A constrained token's logprob is the model's own (not renormalized over the allowed tokens): it equals
    the logprob the same token gets when the prompt + reply is scored unconstrained (echo, max_tokens=0)."""
    prompt = "rev abc="
    (result,) = engine.generate([_request(engine, prompt, StructuredOutput(json_schema=SCHEMAS["array_min_items"]),
                                          max_tokens=MAX_TOKENS, logprobs=3)])
    prompt_ids = engine.tokenizer.encode(prompt)
    (scored,) = engine.generate([GenerationRequest(prompt_ids=prompt_ids + result.output_ids, max_tokens=0,
                                                   echo=True, logprobs=0)])
    raw = [e.logprob for e in scored.prompt_logprobs[len(prompt_ids):]]
    assert torch.allclose(torch.tensor([e.logprob for e in result.output_logprobs]), torch.tensor(raw), atol=1e-5)
    assert all(len(e.top) == 3 for e in result.output_logprobs)


def test_max_tokens_cuts_a_constrained_reply_with_length(engine):
    for prompt in PROMPTS:
        (result,) = engine.generate([_request(engine, prompt, StructuredOutput(json_schema=SCHEMAS["nested"]),
                                              max_tokens=3)])
        assert result.finish_reason == "length" and len(result.output_ids) == 3
        assert re.fullmatch(r'\{("[a-z]*)?', result.text), result.text  # a cut beginning of the object


def test_a_streamed_constrained_reply_equals_the_result(engine):
    request = _request(engine, "rev abc=", StructuredOutput(json_schema=SCHEMAS["object_required_fields"]),
                       max_tokens=MAX_TOKENS)
    deltas = []
    (future,) = engine.submit([request], on_delta=deltas.append)
    result = future.result(timeout=120)
    assert "".join(d.text for d in deltas) == result.text and deltas[-1].finish_reason == "stop"
    jsonschema.validate(json.loads(result.text), SCHEMAS["object_required_fields"])


@pytest.mark.parametrize(("spec", "named"), [
    (StructuredOutput(json_schema={"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
     "uniqueItems"),
    (StructuredOutput(json_schema={"type": "object", "properties": {"a": {"not": {"type": "string"}}}}), '"not"'),
    (StructuredOutput(regex=r"(?=a)b"), "look-around"),
    (StructuredOutput(grammar="start: missing_rule"), "missing_rule"),
    (StructuredOutput(choice=[]), "empty"),
])
def test_an_uncompilable_constraint_is_a_bad_request_naming_it(engine, spec, named):
    request = _request(engine, "12+34=", spec, max_tokens=8)
    with pytest.raises(ValueError, match=re.escape(named)) as caught:
        engine.validate(request)
    assert isinstance(caught.value, StructuredOutputError) and error_kind(caught.value) == "invalid_request"
    with pytest.raises(StructuredOutputError):
        engine.submit([request])
    assert "\n" not in str(caught.value)  # one paragraph, with the fix
    (after,) = engine.generate([_request(engine, "12+34=", max_tokens=4)])  # the engine still serves
    assert after.output_ids


def test_lenient_schema_ignores_what_the_engine_cannot_enforce(engine):
    schema = {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1, "maxItems": 2, "uniqueItems": True,
              "x-guidance": {"lenient": True}}
    (result,) = engine.generate([_request(engine, "rev ab=", StructuredOutput(json_schema=schema), max_tokens=40)])
    assert result.finish_reason == "stop", result.text
    jsonschema.validate(json.loads(result.text), {k: v for k, v in schema.items() if k != "uniqueItems"})


def test_a_grammar_that_allows_no_token_fails_that_request_alone(engine, monkeypatch):
    monkeypatch.setattr(ConstrainedDecoding, "allowed_mask", lambda self, size: torch.zeros(size, dtype=torch.bool))
    futures = engine.submit([_request(engine, "12+34=", max_tokens=6),
                             _request(engine, "rev abc=", StructuredOutput(choice=["a"]), max_tokens=6),
                             _request(engine, "7", max_tokens=6)])
    with pytest.raises(RuntimeError, match="allows no token"):
        futures[1].result(timeout=120)
    assert futures[0].result(timeout=120).output_ids and futures[2].result(timeout=120).output_ids


@pytest.mark.parametrize("extra", [-40, 0, 40])
def test_the_mask_is_llguidances_own_for_any_vocabulary_size(engine, extra):
    """allowed_mask unpacks llguidance's bitmask; its byte-per-token logit bias says the same. A model vocabulary
    longer than the grammar engine's never allows the tail; a shorter one is cut."""
    compiled = compile_constraint(StructuredOutput(json_schema=SCHEMAS["nested"]), engine.tokenizer)
    decoding = ConstrainedDecoding(compiled)
    oracle = compiled.new_matcher()
    size = compiled.grammar_vocab_size + extra
    for token in engine.tokenizer.encode('{"sum":{"a":1'):
        bias = torch.frombuffer(bytearray(oracle.compute_logit_bias()), dtype=torch.uint8) > 0
        mask = decoding.allowed_mask(size)
        assert mask.dtype == torch.bool and mask.shape == (size,)
        known = min(size, bias.numel())
        assert torch.equal(mask[:known], bias[:known]) and not mask[known:].any()
        assert mask.any() and bias[token]
        decoding.accept(token)
        assert oracle.consume_token(token)
    assert not decoding.is_finished()
