"""The checkpoint Megatron-Bridge itself wrote (tests/data/megatron-bridge-written, see its README and
write_checkpoint.py) against its Hugging Face twin: transformers is the oracle for logprobs and chat tokens.

Megatron-Bridge 0.6.2 (`AutoBridge.import_ckpt`, megatron-core 0.19.2) wrote `megatron-bridge/` from `hf/`, the
same tiny Llama 3.1 as the NeMo-written set (original_max_position_embeddings 8192: Megatron-Bridge keeps only
the RoPE factor, megatron-core supplies low 1 / high 4 / original 8192).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import requests
import torch
import yaml

from pytest_nemo_eval.checkpoint import CheckpointError, load_checkpoint

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "megatron-bridge-written" / "llama31-tiny"
ROOT, HF = SAMPLE / "megatron-bridge", SAMPLE / "hf"
ITERATION = ROOT / "iter_0000000"
TOLERANCE = 1e-4
CONVERSATIONS = [
    [{"role": "user", "content": "hello there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  What is 2+2? "}],
]


@pytest.fixture(scope="module")
def hf_model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(HF), dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def loaded():
    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    return load_checkpoint(ROOT, device="cpu")


def _hf_logprobs(hf_model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = hf_model(torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_root_and_iteration_folder_are_detected_with_their_provenance(loaded):
    layout = loaded.layout
    assert (layout.format, layout.iteration, layout.root, loaded.model_id) == (
        "megatron-bridge", 0, ROOT.resolve(), "megatron-bridge")
    assert layout.config_file == ITERATION.resolve() / "run_config.yaml"
    direct = load_checkpoint(ITERATION, device="cpu").layout
    assert (direct.format, direct.iteration, direct.weights_dir) == ("megatron-bridge", 0, ITERATION.resolve())
    # Megatron-Bridge keeps only the llama3 factor; megatron-core's defaults give the rest
    assert loaded.config.rope_scaling.model_dump() == {
        "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "old_context_len": 8192}


def test_forward_equals_transformers_at_every_position(loaded, hf_model):
    length = loaded.config.seq_length
    ids = torch.randint(0, 320, (1, length), generator=torch.Generator().manual_seed(3))
    mask = torch.triu(torch.ones(1, 1, length, length, dtype=torch.bool), diagonal=1)
    with torch.no_grad():
        ours = torch.log_softmax(loaded.model(ids, torch.arange(length)[None], mask)[0, :, :320].float(), -1)
        theirs = torch.log_softmax(hf_model(ids).logits[0].float(), -1)
    difference = (ours - theirs).abs().max().item()
    print(f"megatron-bridge llama31-tiny: max |logprob diff| over 320 tokens x {length} positions = {difference:.2e}")
    assert difference < TOLERANCE


def test_tokenizer_comes_from_the_iteration_and_chat_tokens_equal_hf(loaded):
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(str(HF), local_files_only=True)
    assert loaded.tokenizer.chat_template == (ITERATION / "tokenizer" / "chat_template.jinja").read_text()
    for messages in CONVERSATIONS:
        expected = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        expected = expected["input_ids"] if hasattr(expected, "keys") else expected
        assert loaded.tokenizer.encode(loaded.tokenizer.apply_chat_template(messages)) == list(expected)
        assert expected[0] == 0  # the template's {{ bos_token }}


def test_served_echo_logprobs_through_nemo_eval_deploy(hf_model):
    """`--nemo-checkpoint <Megatron-Bridge root>` through the HTTP API, as loglikelihood harnesses score."""
    from pytest_nemo_eval.serving.launcher import Deployment, DeploymentSettings

    prompts = [torch.randint(0, 320, (n,), generator=torch.Generator().manual_seed(n)).tolist() for n in (2, 65, 256)]
    with Deployment(DeploymentSettings(checkpoint=ROOT, max_batch_size=4)) as running:
        reply = requests.post(f"{running.url}/v1/completions", timeout=300, json={
            "model": running.model_id, "prompt": prompts, "echo": True, "max_tokens": 0, "logprobs": 1})
    assert reply.status_code == 200, reply.text
    worst = 0.0
    for ids, choice in zip(prompts, reply.json()["choices"]):
        served = choice["logprobs"]["token_logprobs"]
        worst = max(worst, float((torch.tensor(served[1:]) - _hf_logprobs(hf_model, ids)).abs().max()))
    print(f"megatron-bridge served echo: max |logprob diff| = {worst:.2e}")
    assert worst < TOLERANCE


def _copy(tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(ROOT, target)
    return target


def test_root_without_iterations_is_refused(tmp_path):
    root = _copy(tmp_path)
    shutil.rmtree(root / "iter_0000000")
    (root / "latest_checkpointed_iteration.txt").unlink()
    with pytest.raises(CheckpointError, match=r"no iter_NNNNNNN/ folder"):
        load_checkpoint(root, device="cpu")


def test_tracker_naming_a_missing_iteration_is_refused(tmp_path):
    root = _copy(tmp_path)
    (root / "latest_checkpointed_iteration.txt").write_text("500")
    with pytest.raises(CheckpointError, match=r"names iter_0000500/.*iterations found: iter_0000000"):
        load_checkpoint(root, device="cpu")


def test_folder_holding_two_roots_is_refused(tmp_path):
    _copy(tmp_path, "run_a"), _copy(tmp_path, "run_b")
    with pytest.raises(CheckpointError, match=r"holds 2 checkpoints \(run_a, run_b\).*pass the one"):
        load_checkpoint(tmp_path, device="cpu")


def test_iteration_without_weights_is_refused(tmp_path):
    root = _copy(tmp_path)
    for name in (".metadata", "__0_0.distcp", "metadata.json"):
        (root / "iter_0000000" / name).unlink()
    with pytest.raises(CheckpointError, match=r"iter_0000000 holds no weights"):
        load_checkpoint(root, device="cpu")


def test_run_config_of_another_model_kind_is_refused(tmp_path):
    root = _copy(tmp_path)
    path = root / "iter_0000000" / "run_config.yaml"
    document = yaml.safe_load(path.read_text())
    document["model"]["_target_"] = "megatron.bridge.models.mamba.mamba_provider.MambaModelProvider"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(CheckpointError, match=r"_target_: megatron.bridge.models.mamba.*GPT models"):
        load_checkpoint(root, device="cpu")
