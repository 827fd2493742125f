"""Reading the demo checkpoint back: the real NeMo 2.0 layout, architecture, tokenizer and weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from pytest_nemo_eval.checkpoint.demo import ARCHITECTURE, PROBE_FILE
from pytest_nemo_eval.checkpoint.tokenizer import Tokenizer


def test_demo_checkpoint_has_the_nemo2_layout(demo_checkpoint):
    weights = demo_checkpoint / "weights"
    assert (demo_checkpoint / "context" / "model.yaml").is_file()
    assert (demo_checkpoint / "context" / "nemo_tokenizer" / "tokenizer.json").is_file()
    for name in ("metadata.json", ".metadata", "common.pt"):
        assert (weights / name).is_file(), name
    assert list(weights.glob("__*_*.distcp"))
    config = yaml.safe_load((demo_checkpoint / "context" / "model.yaml").read_text())["config"]
    assert config["activation_func"] == {"_target_": "torch.nn.functional.silu", "_call_": False}
    assert config["num_query_groups"] < config["num_attention_heads"]  # GQA


def test_demo_checkpoint_is_written_as_nemo_writes(demo_checkpoint):
    """The same format as the NeMo-written sample (tests/data/nemo-written): every config field, the chat
    template in chat_template.jinja, so every demo-based test reads the real format."""
    sample = Path(__file__).resolve().parents[1] / "data" / "nemo-written" / "llama31-tiny" / "nemo" / "context"
    ours = yaml.safe_load((demo_checkpoint / "context" / "model.yaml").read_text())
    nemos = yaml.safe_load((sample / "model.yaml").read_text())
    family_only = {"scale_factor", "low_freq_factor", "high_freq_factor", "old_context_len"}  # Llama31Config's
    assert set(nemos["config"]) - family_only <= set(ours["config"])
    assert ours["config"]["moe_layer_freq"] == 1 and ours["config"]["params_dtype"] == nemos["config"]["params_dtype"]
    assert set(nemos["tokenizer"]) == set(ours["tokenizer"])
    tokenizer_dir = demo_checkpoint / "context" / "nemo_tokenizer"
    assert (tokenizer_dir / "chat_template.jinja").is_file()
    assert "chat_template" not in json.loads((tokenizer_dir / "tokenizer_config.json").read_text())


def test_loaded_model_reproduces_the_trained_models_logits(loaded_demo, demo_checkpoint):
    """demo_probe.pt holds logits the in-memory trained model produced before it was saved."""
    probe = torch.load(demo_checkpoint / PROBE_FILE)
    ids = probe["input_ids"]
    length = ids.shape[1]
    mask = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1).view(1, 1, length, length)
    with torch.no_grad():
        logits = loaded_demo.model(ids, torch.arange(length)[None], mask)
    assert torch.equal(logits, probe["logits"])


def test_architecture_and_precision(loaded_demo, demo_checkpoint):
    assert loaded_demo.config == ARCHITECTURE
    assert loaded_demo.dtype == torch.float32 and loaded_demo.device.type == "cpu"
    assert loaded_demo.model_id == demo_checkpoint.name
    assert not loaded_demo.model.training
    layer = loaded_demo.model.decoder.layers[0]
    assert type(layer.input_layernorm).__name__ in {"RMSNorm", "WrappedTorchNorm"}
    assert loaded_demo.model.config.gated_linear_unit and loaded_demo.model.position_embedding_type == "rope"


def test_tokenizer_round_trip_and_chat_template(loaded_demo):
    tokenizer = loaded_demo.tokenizer
    assert isinstance(tokenizer, Tokenizer)
    text = "def add_12_34():\n    return 46;"
    ids = tokenizer.encode(text)
    assert len(ids) == len(text) and tokenizer.decode(ids) == text
    assert tokenizer.decode([*ids, tokenizer.eos_id]) == text
    assert tokenizer.token_str(ids[0]) == "d"
    assert tokenizer.bos_id is None
    import jinja2

    rendered = jinja2.Template(tokenizer.chat_template).render(
        messages=[{"role": "user", "content": "What is 1+2?"}], add_generation_prompt=True
    )
    assert rendered == "<|user|>What is 1+2?\n<|assistant|>"
    assert tokenizer.encode("<|user|>")[0] != tokenizer.encode("<")[0]  # role markers are single special tokens
