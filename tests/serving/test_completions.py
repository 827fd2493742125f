"""/v1/completions against the real deployed demo checkpoint: answers, logprobs, stop, seed, usage."""

from __future__ import annotations

import math

import numpy as np
import torch


def test_greedy_completions_answer_heldout_additions(api, heldout_addition):
    items = heldout_addition[:30]
    answers = [api.complete(prompt=item["prompt"], max_tokens=6, temperature=0, stop=[";"])["choices"][0]["text"]
               for item in items]
    correct = sum(answer == item["answer"] for answer, item in zip(answers, items))
    assert correct >= 24, list(zip(answers, [i["answer"] for i in items]))  # trained to ~90%, chance ~0%


def _direct_logprobs(direct, ids: list[int]) -> list[float]:
    """log P(ids[i] | ids[:i]) from one plain forward pass of the loaded megatron-core model."""
    length = len(ids)
    tokens = torch.tensor([ids], device=direct.device)
    positions = torch.arange(length, device=direct.device).unsqueeze(0)
    causal_mask = torch.triu(torch.ones(1, 1, length, length, dtype=torch.bool, device=direct.device), diagonal=1)
    with torch.no_grad():
        logits = direct.model(tokens, positions, causal_mask)
    logits = logits[0, :, : direct.tokenizer.vocab_size].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [logprobs[i - 1, ids[i]].item() for i in range(1, length)]


def test_echo_logprobs_with_zero_max_tokens_equal_a_direct_forward_pass(api, direct):
    prompt = "47+38=85;"
    body = api.complete(prompt=prompt, max_tokens=0, echo=True, logprobs=1)
    choice = body["choices"][0]
    logprobs = choice["logprobs"]
    ids = direct.tokenizer.encode(prompt)
    assert choice["text"] == prompt
    assert logprobs["tokens"] == [direct.tokenizer.token_str(t) for t in ids]
    assert logprobs["token_logprobs"][0] is None
    expected = _direct_logprobs(direct, ids)
    served = logprobs["token_logprobs"][1:]
    assert len(served) == len(expected)
    assert all(math.isclose(s, e, abs_tol=1e-4) for s, e in zip(served, expected)), (served, expected)
    assert logprobs["text_offset"] == [len("".join(logprobs["tokens"][:i])) for i in range(len(ids))]
    assert body["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}


def test_generated_logprobs_carry_top_alternatives_consistent_with_the_choice(api):
    body = api.complete(prompt="21+43=", max_tokens=3, logprobs=3)
    logprobs = body["choices"][0]["logprobs"]
    assert 1 <= len(logprobs["tokens"]) == body["usage"]["completion_tokens"] <= 3
    for token, chosen, top in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]):
        assert len(top) == 3
        assert max(top.values()) == chosen  # greedy: the chosen token is the most likely one
        assert top[token] == chosen
    assert logprobs["text_offset"][0] == len("21+43=")


def test_stop_string_ends_the_text_before_it(api):
    full = api.complete(prompt="12+34=", max_tokens=6)["choices"][0]
    cut = api.complete(prompt="12+34=", max_tokens=6, stop=";")["choices"][0]
    assert ";" in full["text"]
    assert cut["text"] == full["text"].split(";")[0]
    assert cut["finish_reason"] == "stop"


def _documented_choice_seed(seed: int, j: int) -> int:
    """README's derivation of choice j's seed (j > 0), written out here from the documentation."""
    state = np.random.SeedSequence(seed, spawn_key=(j, 0)).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


def test_n_choices_per_prompt_are_prompt_major_with_independent_seeds(api):
    options = {"max_tokens": 8, "temperature": 4.0, "seed": 40}
    body = api.complete(prompt=["rev abc=", "rev xyz="], n=3, **options)
    assert [c["index"] for c in body["choices"]] == list(range(6))
    for i, prompt in enumerate(["rev abc=", "rev xyz="]):
        for j in range(3):
            seed = 40 if j == 0 else _documented_choice_seed(40, j)
            alone = api.complete(prompt=prompt, **{**options, "seed": seed})["choices"][0]["text"]
            assert body["choices"][3 * i + j]["text"] == alone
    assert body["usage"]["prompt_tokens"] == 8 + 8  # each prompt counted once, as OpenAI does
    status, chat = api.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "What is 2+2?"}],
                                                     "n": 2, "max_tokens": 4})
    assert status == 200 and [c["index"] for c in chat["choices"]] == [0, 1]
    assert chat["choices"][0]["message"] == chat["choices"][1]["message"]  # greedy: both the same


def test_usage_counts_prompt_and_completion_tokens(api, direct):
    prompt = "55+11="
    body = api.complete(prompt=prompt, max_tokens=4, logprobs=0)
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(direct.tokenizer.encode(prompt))
    assert 1 <= usage["completion_tokens"] == len(body["choices"][0]["logprobs"]["tokens"]) <= 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_token_id_prompts_and_prompt_lists_give_one_choice_each(api, direct):
    text_answer = api.complete(prompt="30+45=", max_tokens=3)["choices"][0]["text"]
    ids_answer = api.complete(prompt=direct.tokenizer.encode("30+45="), max_tokens=3)["choices"][0]["text"]
    assert ids_answer == text_answer
    texts = api.complete(prompt=["30+45=", "rev dog=", "30+45="], max_tokens=3)
    id_lists = api.complete(prompt=[direct.tokenizer.encode("30+45="), direct.tokenizer.encode("rev dog=")], max_tokens=3)
    assert [c["index"] for c in texts["choices"]] == [0, 1, 2]
    assert texts["choices"][0]["text"] == texts["choices"][2]["text"] == id_lists["choices"][0]["text"] == text_answer
    assert texts["choices"][1]["text"] == id_lists["choices"][1]["text"]
    assert texts["usage"]["prompt_tokens"] == 6 + 8 + 6
    generated = sum(len(direct.tokenizer.encode(c["text"])) for c in texts["choices"])
    assert texts["usage"]["completion_tokens"] >= generated
