"""GenerationEngine on the demo model: batching, decoding controls and exact logprobs."""

from __future__ import annotations

import pytest
import torch

from pytest_nemo_eval.serving.engine import GenerationRequest

from .conftest import BATCHED_LOGPROB_ATOL, direct_logprobs

PROMPTS = ["12+34=", "rev abcd=", "def add_10_20():\n    return ", "7"]


def _request(engine, prompt: str, **options) -> GenerationRequest:
    return GenerationRequest(prompt_ids=engine.tokenizer.encode(prompt), **options)


def test_batch_of_different_prompt_lengths_equals_each_request_alone(engine):
    requests = [_request(engine, p, max_tokens=8, logprobs=3, echo=True) for p in PROMPTS]
    batched = engine.generate(requests)
    for request, in_batch in zip(requests, batched):
        alone = engine.generate([request])[0]
        assert in_batch.output_ids == alone.output_ids and in_batch.text == alone.text
        assert in_batch.finish_reason == alone.finish_reason
        assert torch.allclose(
            torch.tensor([e.logprob for e in in_batch.output_logprobs]),
            torch.tensor([e.logprob for e in alone.output_logprobs]), atol=BATCHED_LOGPROB_ATOL,
        )
        assert torch.allclose(
            torch.tensor([e.logprob for e in in_batch.prompt_logprobs[1:]]),
            torch.tensor([e.logprob for e in alone.prompt_logprobs[1:]]), atol=BATCHED_LOGPROB_ATOL,
        )


def test_echo_logprobs_equal_a_direct_forward_pass(engine, loaded_demo):
    """Prompt and generated tokens' logprobs (KV-cached, left-padded) == one plain forward over the whole text."""
    requests = [_request(engine, p, max_tokens=6, logprobs=0, echo=True) for p in PROMPTS]
    for request, result in zip(requests, engine.generate(requests)):
        served = [e.logprob for e in result.prompt_logprobs[1:]] + [e.logprob for e in result.output_logprobs]
        direct = direct_logprobs(loaded_demo.model, request.prompt_ids + result.output_ids, engine.vocab_size)
        assert result.prompt_logprobs[0] is None
        assert torch.allclose(torch.tensor(served), direct[: len(served)], atol=1e-5)


def test_loglikelihood_scoring_with_max_tokens_zero(engine, loaded_demo):
    """How multiple-choice harnesses score: echo + logprobs + max_tokens=0 returns no new tokens."""
    text = "25+17=42;"
    (result,) = engine.generate([_request(engine, text, max_tokens=0, logprobs=1, echo=True)])
    assert result.output_ids == [] and result.text == "" and result.finish_reason == "length"
    direct = direct_logprobs(loaded_demo.model, engine.tokenizer.encode(text), engine.vocab_size)
    assert torch.allclose(torch.tensor([e.logprob for e in result.prompt_logprobs[1:]]), direct, atol=1e-6)
    assert [e.token for e in result.prompt_logprobs[1:]] == list(text[1:])


def test_top_logprobs_are_sorted_alternatives_including_the_greedy_choice(engine):
    (result,) = engine.generate([_request(engine, "12+34=", max_tokens=3, logprobs=5)])
    for entry in result.output_logprobs:
        values = list(entry.top.values())
        assert len(values) == 5 and values == sorted(values, reverse=True)
        assert entry.top[entry.token] == pytest.approx(entry.logprob) == pytest.approx(values[0])  # greedy = best
        assert sum(torch.tensor(values).exp()) <= 1.0 + 1e-5


def test_stop_string_truncates_before_it(engine):
    (free,) = engine.generate([_request(engine, "rev abcd=", max_tokens=8)])
    assert len(free.text) >= 2
    stop = free.text[1]
    (stopped,) = engine.generate([_request(engine, "rev abcd=", max_tokens=8, stop=["zzz", stop], logprobs=0)])
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.index(stop)]
    assert engine.tokenizer.decode(stopped.output_ids) == stopped.text
    assert len(stopped.output_logprobs) == len(stopped.output_ids)


def test_max_tokens_gives_finish_length(engine):
    (result,) = engine.generate([_request(engine, "12+34=", max_tokens=2)])
    assert result.finish_reason == "length" and len(result.output_ids) == 2


def test_eos_gives_finish_stop_with_the_eos_token_last_but_not_in_text(engine):
    """As vLLM: the EOS is a generated token (its logprob entry is what lm-eval's loglikelihood drops)."""
    (result,) = engine.generate([_request(engine, "12+34=", max_tokens=20, logprobs=0)])
    assert result.finish_reason == "stop" and len(result.output_ids) < 20
    assert result.output_ids[-1] == engine.tokenizer.eos_id
    assert engine.tokenizer.eos_id not in result.output_ids[:-1]
    assert [e.token_id for e in result.output_logprobs] == result.output_ids
    assert result.text == engine.tokenizer.decode(result.output_ids[:-1])


def test_seeded_sampling_is_reproducible_whatever_the_batch(engine):
    sampled = _request(engine, "rev abcd=", max_tokens=10, temperature=1.5, seed=7)
    alone = engine.generate([sampled])[0]
    mixed = engine.generate([_request(engine, "12+34=", max_tokens=3), sampled,
                             _request(engine, "a", max_tokens=12, temperature=1.0, seed=1)])[1]
    assert mixed.output_ids == alone.output_ids


def test_top_k_one_and_tiny_top_p_are_greedy(engine):
    greedy = engine.generate([_request(engine, "rev abcd=", max_tokens=6)])[0]
    for options in ({"top_k": 1}, {"top_p": 1e-6}):
        sampled = engine.generate([_request(engine, "rev abcd=", max_tokens=6, temperature=2.0, seed=3, **options)])
        assert sampled[0].output_ids == greedy.output_ids, options


@pytest.mark.parametrize(
    "options,message",
    [
        ({"prompt_ids": [], "max_tokens": 1}, "prompt is empty"),
        ({"prompt_ids": [100000], "max_tokens": 1}, "outside this model's vocabulary"),
    ],
)
def test_requests_the_model_cannot_serve_raise_value_error(engine, options, message):
    with pytest.raises(ValueError, match=message):
        engine.generate([GenerationRequest(**options)])


def test_a_prompt_and_max_tokens_past_the_context_are_refused(engine):
    prompt = engine.max_context - 28
    with pytest.raises(ValueError, match=rf"{prompt} tokens.*max_tokens \(29\).*context of {engine.max_context}"):
        engine.generate([GenerationRequest(prompt_ids=[5] * prompt, max_tokens=29)])


def test_context_exactly_full_is_allowed(engine):
    (result,) = engine.generate([GenerationRequest(prompt_ids=[5] * (engine.max_context - 8), max_tokens=8)])
    assert len(result.output_ids) <= 8


def test_invalid_sampling_parameters_are_rejected_by_the_model():
    with pytest.raises(ValueError):
        GenerationRequest(prompt_ids=[1], top_p=0.0)
    with pytest.raises(ValueError):
        GenerationRequest(prompt_ids=[1], max_tokens=-1)
