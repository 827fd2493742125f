"""The other families as NeMo's own importer wrote them (shared/nemo-written/families, see its README), against
transformers: the ground truth beside test_families.py's checkpoints, which the test writer laid out.

`nemo.collections.llm.import_ckpt` (nemo-toolkit 2.7.3, CPU, megatron-core 0.16.1) wrote each `nemo/` from a
tiny random `hf/`; `hf_ref_transformers4.57.6.json` holds transformers' float32 log P(ids[i] | ids[:i]) at every
position of each prompt, the chat prompt's text and ids, and the plain text's ids. The oracle is that file, not
our reading of the config.

shared/ is not part of the repository: CI and the development machines see it beside the clone (`../shared`),
or NEMO_EVAL_NEMO_WRITTEN names the folder holding `families/`. Without it these tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from pytest_nemo_eval.checkpoint import CheckpointError, load_checkpoint

from .conftest import direct_logprobs

REPO = Path(__file__).resolve().parents[2]
NEMO_WRITTEN = Path(os.environ.get("NEMO_EVAL_NEMO_WRITTEN") or REPO.parent / "shared" / "nemo-written")
FAMILIES_DIR = NEMO_WRITTEN / "families"
REFERENCE = "hf_ref_transformers4.57.6.json"
TOLERANCE = 1e-4  # float32 on both sides; measured <= 1.9e-6
USER_MESSAGE = "Hello there, how are you?"  # the one user turn the reference's chat_text renders

pytestmark = pytest.mark.skipif(
    not FAMILIES_DIR.is_dir(),
    reason=f"no NeMo-written family checkpoints at {FAMILIES_DIR} (shared/ beside the clone, or "
           "NEMO_EVAL_NEMO_WRITTEN): the families' NeMo ground truth is not checked on this machine")

ACCEPTED = ["mistral_w256", "mistral_w32", "qwen2", "nemotron", "llama32_tied", "starcoder2", "starcoder2_w32"]
REFUSED = {
    "mistral_wnull": r"`seq_length: null` in .*mistral_wnull.*Set `seq_length:` in model.yaml's config",
    "gemma": r"Unsupported architecture field `_target_: nemo\.collections\.llm\.gpt\.model\.gemma\.GemmaConfig`",
}


def _reference(name: str) -> dict:
    return json.loads((FAMILIES_DIR / name / REFERENCE).read_text())


def _worst(loaded, prompts: list[list[int]], logprobs: list[list[float]]) -> float:
    worst = 0.0
    for ids, expected in zip(prompts, logprobs):
        ours = direct_logprobs(loaded.model, ids, 320)
        worst = max(worst, (ours - torch.tensor(expected)).abs().max().item())
    return worst


@pytest.fixture(scope="module")
def loaded_families():
    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    return {}


def _loaded(cache: dict, name: str):
    if name not in cache:
        cache[name] = load_checkpoint(FAMILIES_DIR / name / "nemo", device="cpu")
    return cache[name]


@pytest.mark.parametrize("name", ACCEPTED)
def test_nemo_written_family_serves_transformers_logprobs_at_every_position(name, loaded_families):
    """Every prompt that fits the served context, every position, within 1e-4 of transformers."""
    loaded, reference = _loaded(loaded_families, name), _reference(name)
    context = loaded.config.seq_length
    fits = [(ids, lp) for ids, lp in zip(reference["prompts"], reference["hf"]["logprobs"]) if len(ids) <= context]
    assert fits and max(len(ids) for ids, _ in fits) == min(context, max(reference["lengths"]))
    if name == "starcoder2_w32":
        # NeMo's Starcoder2 importer drops HF's sliding_window: the checkpoint means full attention, which is
        # transformers' windowless twin everywhere and the windowed model only within its 32-token window
        worst = _worst(loaded, reference["prompts"], reference["hf_no_window"]["logprobs"])
        short = [(ids, lp) for ids, lp in fits if len(ids) <= 32]
        assert _worst(loaded, *zip(*short)) < TOLERANCE
        assert _worst(loaded, *zip(*fits)) > TOLERANCE  # past the window the windowed HF model differs
    else:
        worst = _worst(loaded, *zip(*fits))
    print(f"{name}: served context {context}, max |logprob diff| = {worst:.2e}")
    assert worst < TOLERANCE
    if name == "mistral_w32":
        assert context == 32  # the window the importer wrote into seq_length caps the context
    if "hf_exact_gelu" in reference:  # negative control: the exact-GELU twin is told apart, even within 32 tokens
        exact = [(ids, lp) for ids, lp in zip(reference["prompts"], reference["hf_exact_gelu"]["logprobs"])
                 if len(ids) <= 32]
        assert _worst(loaded, *zip(*exact)) > TOLERANCE


@pytest.mark.parametrize("name", ACCEPTED)
def test_nemo_written_family_chat_and_text_ids_are_transformers(name, loaded_families):
    """The chat route's prompt (rendered by the checkpoint's template, as vLLM renders it) and its ids, and a
    completion's ids (no special tokens added, as NeMo's text_to_ids), equal transformers'."""
    from transformers import AutoTokenizer

    from pytest_nemo_eval.serving.chat.messages import ChatMessage
    from pytest_nemo_eval.serving.chat.prompt import render_prompt

    tokenizer, reference = _loaded(loaded_families, name).tokenizer, _reference(name)
    prompt = render_prompt(tokenizer, [ChatMessage.model_validate({"role": "user", "content": USER_MESSAGE})])
    assert prompt == reference["chat_text"]
    assert tokenizer.encode(prompt) == reference["chat_ids"]
    text = AutoTokenizer.from_pretrained(str(FAMILIES_DIR / name / "hf"), local_files_only=True).decode(
        reference["text_ids_no_special"])
    assert tokenizer.encode(text) == reference["text_ids_no_special"]
    assert tokenizer.bos_id == reference["bos_token_id"]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_nemo_written_family_is_refused_with_its_message(name):
    with pytest.raises(CheckpointError, match=REFUSED[name]):
        load_checkpoint(FAMILIES_DIR / name / "nemo", device="cpu")


def test_every_family_folder_is_covered():
    """A family added to shared/ without a test here is caught."""
    assert sorted(p.name for p in FAMILIES_DIR.iterdir() if p.is_dir()) == sorted(ACCEPTED + list(REFUSED))
