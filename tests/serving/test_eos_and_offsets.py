"""The end-of-sequence token and text offsets, checked against a direct forward pass of the loaded model.

lm-eval scores a loglikelihood with `echo: true, max_tokens: 1, logprobs: 1` and drops the LAST entry
as the generated token; when the model's next token is EOS, that entry must be the EOS token's, or
a real prompt token is dropped instead.
"""

from __future__ import annotations

import math

from .test_completions import _direct_logprobs

CHAT_PROMPT = "<|user|>What is 47+38?\n<|assistant|>85"


def test_a_generated_eos_has_its_logprob_entry_and_counts_but_is_not_text(api, direct):
    tokenizer = direct.tokenizer
    ids = tokenizer.encode(CHAT_PROMPT)
    body = api.complete(prompt=CHAT_PROMPT, max_tokens=1, echo=True, logprobs=1, temperature=0)
    choice = body["choices"][0]
    logprobs = choice["logprobs"]
    expected = _direct_logprobs(direct, [*ids, tokenizer.eos_id])  # the EOS's logprob from a plain forward
    if logprobs["tokens"][-1] != tokenizer.token_str(tokenizer.eos_id):
        # not every trained demo must end here; the entry for whatever it generated is still there
        assert len(logprobs["tokens"]) == len(ids) + 1
        return
    assert logprobs["tokens"] == [tokenizer.token_str(t) for t in ids] + [tokenizer.token_str(tokenizer.eos_id)]
    assert math.isclose(logprobs["token_logprobs"][-1], expected[-1], abs_tol=1e-4)
    assert all(math.isclose(s, e, abs_tol=1e-4) for s, e in zip(logprobs["token_logprobs"][1:-1], expected[:-1]))
    assert choice["finish_reason"] == "stop"
    assert choice["text"] == CHAT_PROMPT  # the EOS is no text; the echoed prompt keeps its special tokens
    assert body["usage"]["completion_tokens"] == 1


def test_text_offsets_index_the_echoed_text_with_special_tokens(api, direct):
    body = api.complete(prompt=CHAT_PROMPT[:-2], max_tokens=4, echo=True, logprobs=0, temperature=0)
    choice = body["choices"][0]
    text, logprobs = choice["text"], choice["logprobs"]
    assert text.startswith("<|user|>What is 47+38?\n<|assistant|>")
    offsets = logprobs["text_offset"]
    assert offsets == sorted(offsets) and offsets[0] == 0
    for token, offset in zip(logprobs["tokens"], offsets):
        if token == direct.tokenizer.token_str(direct.tokenizer.eos_id):
            assert offset == len(text)  # the EOS: at the end, with no text of its own
        else:
            assert text[offset:offset + len(token)] == token


def test_detokenize_and_tokenize_round_trip_in_vllms_shapes(api, direct):
    status, info = api.get("/tokenizer_info")
    assert status == 200 and info["eos_token"] == direct.tokenizer.token_str(direct.tokenizer.eos_id)
    assert "tokenizer_class" in info and info["model_max_length"] > 0
    status, tokenized = api.post("/tokenize", {"prompt": CHAT_PROMPT, "add_special_tokens": False,
                                              "return_token_strs": True})
    assert status == 200
    assert tokenized["tokens"] == direct.tokenizer.encode(CHAT_PROMPT)
    assert tokenized["count"] == len(tokenized["tokens"]) and tokenized["max_model_len"] == info["model_max_length"]
    assert tokenized["token_strs"][0] == "<|user|>"
    status, detokenized = api.post("/detokenize", {"tokens": tokenized["tokens"]})
    assert status == 200 and detokenized == {"prompt": CHAT_PROMPT}
    status, chat = api.post("/tokenize", {"messages": [{"role": "user", "content": "What is 47+38?"}]})
    assert status == 200 and chat["tokens"] == direct.tokenizer.encode(CHAT_PROMPT[:-2])
