"""GenerationEngine's streaming (on_delta) and cancel(), in process on the demo checkpoint."""

from __future__ import annotations

import threading
import time

import pytest

from pytest_nemo_eval.serving.engine import GenerationEngine, GenerationRequest, RequestCancelled

CASES = [
    ("12+34=", {"max_tokens": 8}),
    ("12+34=", {"max_tokens": 8, "stop": ["4;", "6"]}),  # text held back while it may become "4;"
    ("rev abcd=", {"max_tokens": 12, "stop": ["cb"], "logprobs": 2}),
    ("rev abcd=", {"max_tokens": 12, "temperature": 1.3, "seed": 3, "logprobs": 0}),
    ("<|user|>What is 40+2?\n<|assistant|>", {"max_tokens": 6, "echo": True, "logprobs": 1}),
    ("55+11=", {"max_tokens": 0, "echo": True, "logprobs": 0}),
]


@pytest.fixture(scope="module")
def engine(demo_checkpoint):
    from pytest_nemo_eval.checkpoint.loader import load_checkpoint

    engine = GenerationEngine(load_checkpoint(demo_checkpoint, device="cpu"), slots=4)
    yield engine
    engine.close()


@pytest.mark.parametrize(("prompt", "options"), CASES)
def test_deltas_joined_equal_the_result(engine, prompt, options):
    request = GenerationRequest(prompt_ids=engine.tokenizer.encode(prompt), **options)
    deltas = []
    (future,) = engine.submit([request], on_delta=deltas.append)
    result = future.result(timeout=120)
    assert result == engine.generate([request])[0]  # streaming changes nothing about the answer
    assert "".join(d.text for d in deltas) == result.text
    assert [t for d in deltas for t in d.output_ids] == result.output_ids
    if request.logprobs is not None:
        assert [e for d in deltas for e in d.logprobs] == result.output_logprobs
    assert deltas[0].prompt_logprobs == result.prompt_logprobs
    assert all(d.prompt_logprobs is None for d in deltas[1:])
    assert [d.finish_reason for d in deltas] == [None] * (len(deltas) - 1) + [result.finish_reason]


def test_cancel_retires_a_decoding_request_and_frees_its_slot(engine):
    started = threading.Event()
    long = GenerationRequest(prompt_ids=engine.tokenizer.encode("rev abc="), max_tokens=110, ignore_eos=True,
                             request_id="long-one")
    (future,) = engine.submit([long], on_delta=lambda delta: started.set())
    assert started.wait(60)
    before = engine.stats()
    assert engine.cancel("long-one") is True
    with pytest.raises(RequestCancelled):
        future.result(timeout=60)
    after = engine.stats()
    assert after.cancelled == before.cancelled + 1 and after.active_rows == 0
    assert after.decode_steps - before.decode_steps < 100  # it did not run on to its 110 tokens
    assert engine.cancel("long-one") is False  # nothing left by that name


def test_cancel_of_a_waiting_request_fails_it_before_it_runs(engine):
    hold = [GenerationRequest(prompt_ids=engine.tokenizer.encode("rev abc="), max_tokens=60, ignore_eos=True)
            for _ in range(engine.slots)]
    running = engine.submit(hold)
    waiting_request = GenerationRequest(prompt_ids=engine.tokenizer.encode("1+1="), max_tokens=60, ignore_eos=True,
                                        request_id="queued")
    (waiting,) = engine.submit([waiting_request])
    time.sleep(0.05)
    engine.cancel("queued")
    with pytest.raises(RequestCancelled):
        waiting.result(timeout=60)
    assert all(len(f.result(timeout=120).output_ids) == 60 for f in running)
