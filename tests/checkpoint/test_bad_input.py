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
        ({"num_moe_experts": 8}, "num_moe_experts"),
        ({"normalization": "FooNorm"}, "normalization"),
        ({"position_embedding_type": "alibi"}, "position_embedding_type"),
        ({"activation_func": {"_target_": "torch.nn.functional.mish", "_call_": False}}, "activation_func"),
        ({"hidden_size": None}, "hidden_size"),
    ],
)
def test_unsupported_or_missing_architecture_field(checkpoint_copy, changes, field):
    _edit_config(checkpoint_copy, **changes)
    with pytest.raises(CheckpointError, match=rf"{field}.*model\.yaml|model\.yaml.*{field}"):
        load_checkpoint(checkpoint_copy)


def _truncate_largest_shard(checkpoint):
    shard = max((checkpoint / "weights").glob("__*_*.distcp"), key=lambda p: p.stat().st_size)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])


DAMAGES = {
    "model_yaml_missing": (lambda c: (c / "context" / "model.yaml").unlink(), r"no model\.yaml"),
    "truncated_weight_shard": (_truncate_largest_shard, r"cannot be loaded.*truncated or corrupted"),
    "corrupted_weight_metadata": (
        lambda c: (c / "weights" / ".metadata").write_bytes(b"\x00garbage"), r"cannot be loaded"),
    "weights_of_another_architecture": (lambda c: _edit_config(c, hidden_size=64), r"another architecture"),
    "weights_without_metadata_json": (
        lambda c: (c / "weights" / "metadata.json").unlink(), r"no metadata\.json.*torch_dist"),
    "tokenizer_missing": (
        lambda c: shutil.rmtree(c / "context" / "nemo_tokenizer"), r"No tokenizer found.*tokenizer\.json.*SentencePiece"),
    "tokenizer_file_corrupted": (
        lambda c: (c / "context" / "nemo_tokenizer" / "tokenizer.json").write_text("{not json"),
        r"tokenizer\.json cannot be read"),
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
