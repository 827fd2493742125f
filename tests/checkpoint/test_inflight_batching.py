"""In-flight batching: requests join and leave a running decode and still compute what they compute alone."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from pytest_nemo_eval.serving.engine import EngineClosed, GenerationEngine, GenerationRequest

from .conftest import BATCHED_LOGPROB_ATOL, direct_logprobs


def _request(engine, prompt: str, **options) -> GenerationRequest:
    return GenerationRequest(prompt_ids=engine.tokenizer.encode(prompt), **options)


def _wait_until(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the engine made no progress"
        time.sleep(0.002)


SHORT_CONTEXT = 128


@pytest.fixture
def two_slot_engine(loaded_demo):
    """A second engine on the same model with 2 slots and its served context capped at 128 positions,
    to run out of slots and timeline on purpose within a few dozen decode steps."""
    capped = dataclasses.replace(loaded_demo, config=loaded_demo.config.model_copy(update={"seq_length": SHORT_CONTEXT}))
    engine = GenerationEngine(capped, slots=2)
    yield engine
    engine.close()


def test_a_request_joining_a_running_decode_equals_it_alone(engine, loaded_demo):
    running = _request(engine, "rev abc=", max_tokens=60, ignore_eos=True)
    joiner = _request(engine, "12+34=", max_tokens=6, logprobs=0, echo=True)
    alone_running, alone_joiner = engine.generate([running])[0], engine.generate([joiner])[0]

    before = engine.stats()
    (running_future,) = engine.submit([running])
    _wait_until(lambda: engine.stats().decode_steps >= before.decode_steps + 5)
    joined = engine.generate([joiner])[0]
    assert not running_future.done(), "the joiner should have finished while the long request was still decoding"
    after_running = running_future.result()
    after = engine.stats()

    assert after.decoded_rows - before.decoded_rows > after.decode_steps - before.decode_steps  # decoded together
    assert joined.output_ids == alone_joiner.output_ids and joined.text == alone_joiner.text
    assert after_running.output_ids == alone_running.output_ids
    served = [e.logprob for e in joined.prompt_logprobs[1:]] + [e.logprob for e in joined.output_logprobs]
    direct = direct_logprobs(loaded_demo.model, joiner.prompt_ids + joined.output_ids, engine.vocab_size)
    assert torch.allclose(torch.tensor(served), direct[: len(served)], atol=1e-5)


def test_scoring_and_generating_requests_admitted_together_equal_themselves_alone(engine, two_slot_engine):
    """A multiple-choice harness (echo, max_tokens=0, long prompts) beside a generating one (short prompt):
    the scored prompt is longer than the timeline room before the generating row, on a fresh timeline
    and on a running one. Regression: copying the whole prefill width there failed every such step."""
    scored = _request(engine, "rev abcdefghijklmnopqrstuvwxyz=", max_tokens=0, logprobs=0, echo=True)
    generating = _request(engine, "12+34=", max_tokens=6)
    running = _request(engine, "7", max_tokens=40, ignore_eos=True)
    alone = [engine.generate([r])[0] for r in (scored, generating, running)]

    fresh = two_slot_engine.generate([scored, generating])
    (running_future,) = two_slot_engine.submit([running])
    _wait_until(lambda: two_slot_engine.stats().decode_steps >= 8)  # cur ~ 9: shorter than the scored prompt
    joined = two_slot_engine.generate([scored, generating])

    for scored_result, generated in (fresh, joined):
        assert [e.logprob for e in scored_result.prompt_logprobs[1:]] == pytest.approx(
            [e.logprob for e in alone[0].prompt_logprobs[1:]], abs=BATCHED_LOGPROB_ATOL)
        assert generated.output_ids == alone[1].output_ids
    assert running_future.result().output_ids == alone[2].output_ids


def test_ignore_eos_generates_exactly_max_tokens(engine):
    stopped = engine.generate([_request(engine, "12+34=", max_tokens=20)])[0]
    full = engine.generate([_request(engine, "12+34=", max_tokens=20, ignore_eos=True)])[0]
    assert stopped.finish_reason == "stop" and len(stopped.output_ids) < 20
    assert full.finish_reason == "length" and len(full.output_ids) == 20
    assert full.output_ids[: len(stopped.output_ids)] == stopped.output_ids


def test_more_requests_than_slots_queue_and_reuse_slots(engine, two_slot_engine):
    prompts = ["12+34=", "rev abcd=", "7", "55+21=", "rev xy="]
    requests = [_request(engine, p, max_tokens=8, logprobs=2) for p in prompts]
    results = two_slot_engine.generate(requests)
    stats = two_slot_engine.stats()
    assert stats.mean_active_rows <= 2 and stats.prefilled_rows == len(prompts)
    for request, result in zip(requests, results):
        alone = engine.generate([request])[0]
        assert result.output_ids == alone.output_ids and result.finish_reason == alone.finish_reason
        assert [e.logprob for e in result.output_logprobs] == pytest.approx([e.logprob for e in alone.output_logprobs],
                                                                            abs=BATCHED_LOGPROB_ATOL)


def test_a_request_without_timeline_room_waits_for_the_batch_to_drain(engine, two_slot_engine):
    """A 100-token request arriving 30 steps into another cannot fit on the 128-position timeline
    beside it (a free slot notwithstanding): it starts when the timeline restarts."""
    first = _request(engine, "rev ab=", max_tokens=100, ignore_eos=True)
    second = _request(engine, "rev abcd=", max_tokens=100, ignore_eos=True)
    (first_future,) = two_slot_engine.submit([first])
    _wait_until(lambda: two_slot_engine.stats().decode_steps >= 30)
    second_result = two_slot_engine.generate([second])[0]
    stats = two_slot_engine.stats()
    assert stats.timeline_restarts == 1 and stats.decoded_rows == stats.decode_steps  # never decoded together
    assert first_future.result().output_ids == engine.generate([first])[0].output_ids
    assert second_result.output_ids == engine.generate([second])[0].output_ids


def test_a_failing_forward_fails_its_requests_and_the_engine_keeps_serving(engine, two_slot_engine, monkeypatch):
    """A model crash cannot be provoked on a healthy model, so the forward is made to raise once (fault injection)."""
    real_forward = two_slot_engine._forward
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("simulated device fault")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(two_slot_engine, "_forward", crash_once)
    request = _request(engine, "12+34=", max_tokens=4)
    with pytest.raises(RuntimeError, match="simulated device fault"):
        two_slot_engine.generate([request])
    assert two_slot_engine.generate([request])[0].output_ids == engine.generate([request])[0].output_ids


def test_close_fails_unfinished_requests_and_refuses_new_ones(engine, two_slot_engine):
    (future,) = two_slot_engine.submit([_request(engine, "rev ab=", max_tokens=100, ignore_eos=True)])
    _wait_until(lambda: two_slot_engine.stats().decode_steps > 0)
    two_slot_engine.close()
    assert isinstance(future.exception(timeout=30), EngineClosed)
    with pytest.raises(EngineClosed):
        two_slot_engine.submit([_request(engine, "7", max_tokens=1)])


def test_a_row_moved_down_the_timeline_computes_what_it_computes_alone(engine, two_slot_engine):
    """Compaction: once the first request ends, the second (admitted 50 steps in) is the oldest live row and
    starts past half the timeline's position, so its keys/values move down to 0; its tokens and logprobs
    must not change."""
    first = _request(engine, "rev ab=", max_tokens=80, ignore_eos=True)
    second = _request(engine, "12+34=", max_tokens=60, ignore_eos=True, logprobs=1)
    (first_future,) = two_slot_engine.submit([first])
    _wait_until(lambda: two_slot_engine.stats().decode_steps >= 50)
    joined = two_slot_engine.generate([second])[0]
    stats = two_slot_engine.stats()
    assert stats.timeline_compactions >= 1 and stats.timeline_restarts == 0
    assert stats.decoded_rows > stats.decode_steps  # the two decoded side by side before the move
    alone = engine.generate([second])[0]
    assert joined.output_ids == alone.output_ids
    assert [e.logprob for e in joined.output_logprobs] == pytest.approx([e.logprob for e in alone.output_logprobs],
                                                                        abs=BATCHED_LOGPROB_ATOL)
    assert first_future.result().output_ids == engine.generate([first])[0].output_ids
