"""The checkpoint NeMo's own importer wrote (tests/data/nemo-written/llama31-tiny, see its README) against its
Hugging Face twin: transformers is the oracle for logprobs, the tokenizer and the chat prompt.

NeMo 2.7.3 wrote `nemo/` from `hf/` (a tiny random Llama 3.1 with RoPE scaling, a BPE tokenizer and a
chat template starting with `{{ bos_token }}`); NeMo's own model on it matched `hf/` to 6.2e-6.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import requests
import torch
import yaml

from pytest_nemo_eval.checkpoint import config_fields, load_checkpoint
from pytest_nemo_eval.checkpoint.config import read_architecture

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "nemo-written" / "llama31-tiny"
NEMO, HF = SAMPLE / "nemo", SAMPLE / "hf"
TOLERANCE = 1e-4  # float32 on both sides; measured ~1.3e-5 at 256 tokens
CONVERSATIONS = [
    [{"role": "user", "content": "hello there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  What is 2+2? "}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}],
]
TEXT = "the quick brown fox jumps over the lazy dog; hello world, hello there."


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(HF), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(HF), local_files_only=True)


@pytest.fixture(scope="module")
def loaded():
    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    return load_checkpoint(NEMO, device="cpu")


def hf_logprobs(hf_model, ids: list[int]) -> torch.Tensor:
    """transformers' float32 log P(ids[i] | ids[:i]) for i >= 1."""
    with torch.no_grad():
        logits = hf_model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def random_ids(length: int, seed: int) -> list[int]:
    return torch.randint(0, 320, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_every_field_of_nemos_dump_is_applied_neutral_or_at_a_supported_value():
    config = yaml.safe_load((NEMO / "context" / "model.yaml").read_text())["config"]
    assert len(config) > 250 and config["moe_layer_freq"] == 1 and config["num_moe_experts"] is None
    unclassified = [name for name in config
                    if name not in config_fields.APPLIED and name not in config_fields.REQUIRED
                    and not config_fields.is_neutral(name) and not config_fields.is_off(config[name])]
    assert unclassified == []
    arch = read_architecture(NEMO / "context")
    assert arch.rope_scaling is not None
    assert (arch.rope_scaling.factor, arch.rope_scaling.low_freq_factor, arch.rope_scaling.high_freq_factor,
            arch.rope_scaling.old_context_len) == (8.0, 1.0, 4.0, 8192)
    assert (arch.seq_length, arch.vocab_size, arch.activation, arch.rotary_base) == (256, 320, "silu", 500000.0)


def test_forward_equals_transformers_at_every_position_up_to_the_context(loaded, hf_model):
    """One causal forward of the full context scores every prefix length 1..256 at once."""
    ids = random_ids(loaded.config.seq_length, seed=0)
    length = len(ids)
    mask = torch.triu(torch.ones(1, 1, length, length, dtype=torch.bool), diagonal=1)
    with torch.no_grad():
        logits = loaded.model(torch.tensor([ids]), torch.arange(length)[None], mask)[0, :, :320].float()
        expected = torch.log_softmax(hf_model(torch.tensor([ids])).logits[0].float(), dim=-1)
    difference = (torch.log_softmax(logits, dim=-1) - expected).abs().amax(dim=-1)
    print(f"llama31-tiny direct: max |logprob diff| over 320 tokens x {length} positions = {difference.max():.2e}")
    assert difference.max() < TOLERANCE, difference


def test_tokenizer_is_nemos_no_bos_for_completions_and_hf_for_chat(loaded, hf_tokenizer):
    tokenizer = loaded.tokenizer
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.vocab_size) == (0, 4, 320)
    # NeMo's AutoTokenizer.text_to_ids tokenizes without special tokens: no BOS on a plain completion.
    assert tokenizer.encode(TEXT) == hf_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert tokenizer.chat_template == (NEMO / "context" / "nemo_tokenizer" / "chat_template.jinja").read_text()
    for messages in CONVERSATIONS:
        expected = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
        rendered = tokenizer.apply_chat_template(messages)
        assert rendered == hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert tokenizer.encode(rendered) == list(expected)
        assert expected[0] == 0  # the template's {{ bos_token }}


@pytest.fixture(scope="module")
def deployment():
    from pytest_nemo_eval.serving.launcher import Deployment, DeploymentSettings

    with Deployment(DeploymentSettings(checkpoint=NEMO, max_batch_size=8)) as running:
        yield running


def _complete(deployment, **payload) -> dict:
    reply = requests.post(f"{deployment.url}/v1/completions", json=payload, timeout=300)
    assert reply.status_code == 200, reply.text
    return reply.json()


LENGTHS = (2, 3, 17, 64, 129, 255, 256)


def test_served_echo_logprobs_equal_transformers_at_every_length_up_to_the_context(deployment, hf_model):
    """Through `nemo-eval deploy`'s HTTP API, as loglikelihood harnesses score (echo, max_tokens=0, logprobs=1)."""
    prompts = [random_ids(length, seed=length) for length in LENGTHS]
    body = _complete(deployment, model=deployment.model_id, prompt=prompts, echo=True, max_tokens=0, logprobs=1)
    worst = {}
    for ids, choice in zip(prompts, body["choices"]):
        served = choice["logprobs"]["token_logprobs"]
        assert served[0] is None and len(served) == len(ids)
        difference = (torch.tensor(served[1:]) - hf_logprobs(hf_model, ids)).abs()
        worst[len(ids)] = float(difference.max())
    print("llama31-tiny served echo: max |logprob diff| per prompt length:",
          ", ".join(f"{n}: {d:.2e}" for n, d in worst.items()))
    assert max(worst.values()) < TOLERANCE, worst


def test_served_text_prompt_gets_no_bos_and_hf_logprobs(deployment, hf_model, hf_tokenizer):
    ids = hf_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    body = _complete(deployment, model=deployment.model_id, prompt=TEXT, echo=True, max_tokens=0, logprobs=1)
    logprobs = body["choices"][0]["logprobs"]
    assert body["usage"]["prompt_tokens"] == len(ids)
    assert (torch.tensor(logprobs["token_logprobs"][1:]) - hf_logprobs(hf_model, ids)).abs().max() < TOLERANCE


@pytest.mark.parametrize("messages", CONVERSATIONS[1:])
def test_served_chat_prompt_is_apply_chat_templates(deployment, hf_tokenizer, messages):
    """The chat route answers exactly as /v1/completions does on apply_chat_template's token ids."""
    ids = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    reply = requests.post(f"{deployment.url}/v1/chat/completions", timeout=300, json={
        "model": deployment.model_id, "messages": messages, "max_tokens": 8, "temperature": 0, "logprobs": True})
    assert reply.status_code == 200, reply.text
    chat = reply.json()
    completion = _complete(deployment, model=deployment.model_id, prompt=ids, max_tokens=8, temperature=0, logprobs=0)
    assert chat["usage"]["prompt_tokens"] == len(ids)
    chat_logprobs = [entry["logprob"] for entry in chat["choices"][0]["logprobs"]["content"]]
    assert chat_logprobs == completion["choices"][0]["logprobs"]["token_logprobs"]
    assert chat["choices"][0]["message"]["content"] == completion["choices"][0]["text"]


def test_model_yaml_tokenizer_chat_template_wins_as_in_nemos_auto_tokenizer(tmp_path, hf_tokenizer):
    """NeMo's AutoTokenizer(chat_template=...) replaces the folder's template; transformers renders either."""
    import shutil

    from pytest_nemo_eval.checkpoint.tokenizer import load_tokenizer

    context = tmp_path / "context"
    shutil.copytree(NEMO / "context", context)
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}{{ bos_token }}"
    document = yaml.safe_load((context / "model.yaml").read_text())
    document["tokenizer"]["chat_template"] = template
    (context / "model.yaml").write_text(yaml.safe_dump(document))
    tokenizer = load_tokenizer(context)
    for messages in CONVERSATIONS:
        assert tokenizer.apply_chat_template(messages) == hf_tokenizer.apply_chat_template(
            messages, chat_template=template, add_generation_prompt=True, tokenize=False)


def test_io_json_only_checkpoint_is_read_through_nemos_load_context(tmp_path):
    """Older NeMo 2.0 checkpoints have io.json only; NeMo's own load_context reads them (needs nemo-toolkit)."""
    pytest.importorskip("nemo.lightning", reason="nemo-toolkit is not installed here; the error path is tested "
                                                 "in test_bad_input.py")
    import shutil

    context = tmp_path / "context"
    shutil.copytree(NEMO / "context", context)
    (context / "model.yaml").unlink()
    assert read_architecture(context) == read_architecture(NEMO / "context")
