"""Each unusable checkpoint gives one clear CheckpointError naming what is wrong, in seconds."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pytest_nemo_eval.checkpoint import CheckpointError, load_checkpoint


@pytest.fixture
def checkpoint_copy(demo_checkpoint, tmp_path):
    """A writable copy of the demo checkpoint (2.5 MB) to damage."""
    copy = tmp_path / "ckpt"
    shutil.copytree(demo_checkpoint, copy)
    return copy


def _edit_config(checkpoint, **changes):
    path = checkpoint / "context" / "model.yaml"
    document = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            document["config"].pop(key)
        else:
            document["config"][key] = value
    path.write_text(yaml.safe_dump(document))


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_file_instead_of_directory(tmp_path):
    (tmp_path / "model.nemo").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"is a file, not a directory"):
        load_checkpoint(tmp_path / "model.nemo")


@pytest.mark.parametrize("present,missing", [("context", "weights/"), ("weights", "context/"), (None, "context/ and weights/")])
def test_not_a_nemo_checkpoint_names_the_missing_folder(tmp_path, present, missing):
    if present:
        (tmp_path / present).mkdir()
    with pytest.raises(CheckpointError, match=rf"not a NeMo 2.0 checkpoint: missing {missing}"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"num_moe_experts": 8}, "num_moe_experts: 8.*mixture-of-experts"),
        ({"qk_layernorm": True}, "qk_layernorm: True.*no QK layer norm"),
        ({"rotary_interleaved": True}, "rotary_interleaved"),
        ({"window_size": [16, 16]}, r"window_size.*causal sliding window"),
        ({"fancy_new_switch": 3}, "Unknown architecture field `fancy_new_switch: 3`"),
        ({"_target_": "nemo.collections.llm.gpt.model.gemma.GemmaConfig"}, "_target_.*gemma"),
        ({"transformer_layer_spec": {"_target_": "my.custom_spec", "_call_": False}}, "transformer_layer_spec.*my.custom_spec"),
        ({"normalization": "FooNorm"}, "normalization"),
        ({"position_embedding_type": "alibi"}, "position_embedding_type"),
        ({"activation_func": {"_target_": "torch.nn.functional.mish", "_call_": False}},
         "activation_func: torch.nn.functional.mish.*squared_relu"),
        ({"hidden_size": None}, "hidden_size"),
    ],
)
def test_unsupported_or_missing_architecture_field(checkpoint_copy, changes, field):
    _edit_config(checkpoint_copy, **changes)
    with pytest.raises(CheckpointError, match=field) as raised:
        load_checkpoint(checkpoint_copy)
    assert str(checkpoint_copy / "context" / "model.yaml") in str(raised.value)  # names the file


def _truncate_largest_shard(checkpoint):
    shard = max((checkpoint / "weights").glob("__*_*.distcp"), key=lambda p: p.stat().st_size)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])


DAMAGES = {
    "model_yaml_missing": (lambda c: (c / "context" / "model.yaml").unlink(), r"no model\.yaml"),
    "truncated_weight_shard": (_truncate_largest_shard, r"cannot be loaded.*truncated or corrupted"),
    "corrupted_weight_metadata": (
        lambda c: (c / "weights" / ".metadata").write_bytes(b"\x00garbage"), r"cannot be loaded"),
    "weights_of_another_architecture": (
        lambda c: _edit_config(c, hidden_size=64),
        r"do not fit the architecture in .*model\.yaml: `module\.embedding\.word_embeddings\.weight` is stored "
        r"with shape \[(\d+), 128\] but the config makes \[\1, 64\] \(from vocab_size, make_vocab_size_divisible_by, "
        r"hidden_size\)"),
    "weights_without_metadata_json": (
        lambda c: (c / "weights" / "metadata.json").unlink(), r"no metadata\.json.*torch_dist"),
    "tokenizer_missing": (
        lambda c: shutil.rmtree(c / "context" / "nemo_tokenizer"), r"No tokenizer found.*tokenizer\.json.*SentencePiece"),
    "tokenizer_file_corrupted": (
        lambda c: (c / "context" / "nemo_tokenizer" / "tokenizer.json").write_text("{not json"),
        r"nemo_tokenizer cannot be read by transformers' AutoTokenizer .*tokenizer\.json"),
    "tokenizer_folder_without_usable_files": (
        lambda c: [p.unlink() for p in (c / "context" / "nemo_tokenizer").iterdir()
                   if p.name in ("tokenizer.json", "tokenizer_config.json")],
        r"No tokenizer found.*tokenizer\.json or tokenizer_config\.json"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_checkpoint(checkpoint_copy, damage):
    apply_damage, message = DAMAGES[damage]
    apply_damage(checkpoint_copy)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(checkpoint_copy)


def test_sentencepiece_tokenizer_without_the_package(checkpoint_copy):
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("sentencepiece is installed here, so the missing-package error cannot occur")
    folder = checkpoint_copy / "context" / "nemo_tokenizer"
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(b"\x00")
    with pytest.raises(CheckpointError, match=r"SentencePiece.*pip install sentencepiece"):
        load_checkpoint(checkpoint_copy)


def test_parallelism_beyond_available_gpus(demo_checkpoint):
    with pytest.raises(CheckpointError, match=r"tensor_parallel=2 x pipeline_parallel=1 needs 2 GPUs"):
        load_checkpoint(demo_checkpoint, tensor_parallel=2)


def test_dense_model_with_moe_layer_freq_is_dense(checkpoint_copy):
    """NeMo writes moe_layer_freq: 1 into every dense model's config; with no experts it means nothing."""
    _edit_config(checkpoint_copy, moe_layer_freq=1, num_moe_experts=0, moe_router_topk=2)
    assert load_checkpoint(checkpoint_copy).config.num_layers == 3


def test_tokenizer_named_only_by_hub_name_is_refused_offline(checkpoint_copy):
    shutil.rmtree(checkpoint_copy / "context" / "nemo_tokenizer")
    path = checkpoint_copy / "context" / "model.yaml"
    document = yaml.safe_load(path.read_text())
    document["tokenizer"]["pretrained_model_name"] = "meta-llama/Llama-3.1-8B"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(CheckpointError, match=r"`meta-llama/Llama-3.1-8B`, a Hugging Face hub name.*offline"):
        load_checkpoint(checkpoint_copy)


def test_io_json_only_without_nemo_says_how_to_write_model_yaml(checkpoint_copy):
    try:
        import nemo.lightning  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("nemo-toolkit is installed here: io.json is read through its load_context")
    (checkpoint_copy / "context" / "model.yaml").unlink()
    (checkpoint_copy / "context" / "io.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"io\.json but no model\.yaml.*pip install nemo-toolkit.*io_dump"):
        load_checkpoint(checkpoint_copy)


@pytest.mark.parametrize("tensor_parallel,expected", [(1, 128), (2, 256), (4, 512)])
def test_null_vocab_size_is_padded_as_nemos_get_vocab_size(tensor_parallel, expected):
    """NeMo (nemo/lightning/base.py get_vocab_size) pads to make_vocab_size_divisible_by x tensor parallel size."""
    from pytest_nemo_eval.checkpoint.demo import ARCHITECTURE

    assert ARCHITECTURE.vocab_size is None and ARCHITECTURE.make_vocab_size_divisible_by == 128
    assert ARCHITECTURE.padded_vocab_size(102, tensor_parallel) == expected
