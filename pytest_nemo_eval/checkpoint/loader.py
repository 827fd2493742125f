"""Load a NeMo 2.0 checkpoint directory into a megatron-core GPTModel (eval mode) and its tokenizer.

Layout: `<ckpt>/context/model.yaml` (architecture), `<ckpt>/context/nemo_tokenizer/`
(tokenizer), `<ckpt>/weights/` (megatron-core dist_checkpointing, torch_dist).
Weights are stored under the `module.` prefix, as NeMo's MegatronStrategy writes them.

Precision: bf16 on CUDA, fp32 on CPU (override with `dtype`). Parallelism:
tensor_parallel/pipeline_parallel > 1 need that many GPUs and a launch with one
process per GPU (`torchrun --nproc-per-node=TP*PP`); otherwise a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..third_party_warnings import silenced
from . import cpu_compat
from .config import GPTArchitecture, build_transformer_config, read_architecture
from .errors import CheckpointError
from .tokenizer import Tokenizer, load_tokenizer

WEIGHTS_PREFIX = "module."


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    tokenizer: Tokenizer
    config: GPTArchitecture
    model_id: str
    device: torch.device
    dtype: torch.dtype


def check_layout(path: Path) -> Path:
    """The checkpoint root, after checking it is a NeMo 2.0 directory; says what is missing."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"Checkpoint path {path} does not exist. Pass the directory of a NeMo 2.0 checkpoint.")
    if not path.is_dir():
        raise CheckpointError(
            f"Checkpoint path {path} is a file, not a directory. NeMo 2.0 checkpoints are directories with "
            "context/ and weights/ (unpack a .nemo/.tar archive first)."
        )
    missing = [name for name in ("context", "weights") if not (path / name).is_dir()]
    if missing:
        raise CheckpointError(
            f"{path} is not a NeMo 2.0 checkpoint: missing {' and '.join(f'{m}/' for m in missing)} "
            "(expected context/ with model.yaml and the tokenizer, and weights/ with the torch_dist shards)."
        )
    return path.resolve()


def _check_parallelism(tensor_parallel: int, pipeline_parallel: int, device: torch.device) -> None:
    needed = tensor_parallel * pipeline_parallel
    if tensor_parallel < 1 or pipeline_parallel < 1:
        raise CheckpointError(f"tensor_parallel and pipeline_parallel must be >= 1 (got {tensor_parallel}, {pipeline_parallel}).")
    if needed == 1:
        return
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < needed:
        raise CheckpointError(
            f"tensor_parallel={tensor_parallel} x pipeline_parallel={pipeline_parallel} needs {needed} GPUs, "
            f"but {gpus} {'is' if gpus == 1 else 'are'} available. Use 1 and 1, or run on a machine with more GPUs."
        )
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else None
    if world != needed:
        raise CheckpointError(
            f"tensor_parallel x pipeline_parallel = {needed} needs one process per GPU: launch with "
            f"`torchrun --nproc-per-node={needed} ...` (world size is {world or 1})."
        )


def build_model(arch: GPTArchitecture, vocab_size: int, dtype: torch.dtype, device: torch.device,
                tensor_parallel: int = 1):
    """An untrained megatron-core GPTModel of this architecture (local, Transformer-Engine-free layers).

    Llama 3.1+ RoPE scaling is applied the way NeMo's Llama31Config.configure_model does it
    (inv_freq rescaled after construction), with megatron-core's own scaling function, which
    unlike GPTModel's `rope_scaling` argument takes all four parameters.
    """
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    cpu_compat.apply_cpu_shims()
    config = build_transformer_config(arch, dtype, use_cpu_initialization=device.type == "cpu")
    model = GPTModel(
        config=config,
        transformer_layer_spec=get_gpt_layer_local_spec(normalization=arch.normalization),
        vocab_size=arch.padded_vocab_size(vocab_size, tensor_parallel),
        max_sequence_length=arch.seq_length,
        position_embedding_type=arch.position_embedding_type,
        rotary_base=arch.rotary_base,  # a float as NeMo passes it (Starcoder2 3B: 999999.44...)
        rotary_percent=arch.rotary_percent,
        seq_len_interpolation_factor=arch.seq_len_interpolation_factor,
        share_embeddings_and_output_weights=arch.share_embeddings_and_output_weights,
    )
    if arch.rope_scaling is not None:
        rope, scaling = model.rotary_pos_emb, arch.rope_scaling
        rope.inv_freq = rope._apply_scaling(
            rope.inv_freq, factor=scaling.factor, low_freq_factor=scaling.low_freq_factor,
            high_freq_factor=scaling.high_freq_factor, original_max_position_embeddings=scaling.old_context_len,
        )
    return model.to(device=device, dtype=dtype)


def _fold_zero_centered_gamma(model: torch.nn.Module) -> None:
    """layernorm_zero_centered_gamma stores gamma - 1; local norms compute with gamma, so add the 1 back."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.LayerNorm, torch.nn.RMSNorm)) and module.weight is not None:
                module.weight.add_(1.0)


_SHAPING_FIELDS = (  # tensor-name fragment -> the config fields its shape comes from
    ("word_embeddings", "vocab_size, make_vocab_size_divisible_by, hidden_size"),
    ("output_layer", "vocab_size, make_vocab_size_divisible_by, hidden_size"),
    ("linear_qkv", "num_attention_heads, num_query_groups, kv_channels, hidden_size, num_layers"),
    ("linear_proj", "num_attention_heads, kv_channels, hidden_size, num_layers"),
    ("linear_fc", "ffn_hidden_size, gated_linear_unit, hidden_size, num_layers"),
    ("position_embeddings", "seq_length, hidden_size"),
)


def _fields_shaping(key: str) -> str:
    return next((names for fragment, names in _SHAPING_FIELDS if fragment in key), "hidden_size, num_layers")


def _check_shapes(model: torch.nn.Module, weights_dir: Path, arch_source: str) -> None:
    """Compare every tensor's shape with the checkpoint's before loading: a mismatch names tensor and shapes."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor
    from torch.distributed.checkpoint import FileSystemReader

    try:
        stored = FileSystemReader(str(weights_dir)).read_metadata().state_dict_metadata
    except Exception:  # an unreadable .metadata is reported by load_weights with its own message
        return
    for key, sharded in model.sharded_state_dict(prefix=WEIGHTS_PREFIX).items():
        if not isinstance(sharded, ShardedTensor) or sharded.key not in stored:
            continue
        saved = tuple(getattr(stored[sharded.key], "size", ()))
        if saved and saved != tuple(sharded.global_shape):
            raise CheckpointError(
                f"The weights in {weights_dir} do not fit the architecture in {arch_source}: `{sharded.key}` is "
                f"stored with shape {list(saved)} but the config makes {list(sharded.global_shape)} (from "
                f"{_fields_shaping(sharded.key)}). That config does not describe these weights: use the model.yaml "
                "written with them, or correct those fields."
            )


def load_weights(model: torch.nn.Module, weights_dir: Path) -> None:
    """Fill `model` from a torch_dist checkpoint; a damaged or mismatched one raises CheckpointError."""
    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception

    if not (weights_dir / "metadata.json").is_file():
        raise CheckpointError(
            f"{weights_dir} holds no metadata.json, so it is not a megatron-core dist_checkpointing (torch_dist) "
            "checkpoint. Re-save the weights with NeMo 2.0 / megatron-core."
        )
    try:
        state = dist_checkpointing.load(model.sharded_state_dict(prefix=WEIGHTS_PREFIX), str(weights_dir))
        stripped = {key.removeprefix(WEIGHTS_PREFIX): value for key, value in state.items()}
        model.load_state_dict(stripped, strict=False)
    except (Exception, CheckpointException) as exc:  # damaged files raise many types
        detail = [line for line in str(exc).strip().splitlines() if line.strip()]
        raise CheckpointError(
            f"The weights in {weights_dir} cannot be loaded ({type(exc).__name__}: "
            f"{detail[-1] if detail else 'no detail'}). The files may be truncated or corrupted, or written "
            "for another architecture than context/model.yaml describes; copy or export the checkpoint again."
        ) from None


def default_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def serving_dtype(arch: GPTArchitecture, device: torch.device, dtype: torch.dtype | None, source) -> torch.dtype:
    """bf16 on CUDA, fp32 on CPU; fp32 whenever the model keeps its residual stream in fp32
    (fp32_residual_connection: megatron-core casts the embeddings to fp32, which local bf16 layers cannot take)."""
    if arch.fp32_residual_connection:
        if dtype not in (None, torch.float32):
            raise CheckpointError(
                f"`fp32_residual_connection: true` in {source} keeps the residual stream in fp32, which this loader "
                f"serves only in float32, not {dtype}. Load it with dtype=torch.float32 (the default for it)."
            )
        return torch.float32
    return dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)


def load_checkpoint(
    path, *, device=None, dtype=None, tensor_parallel: int = 1, pipeline_parallel: int = 1
) -> LoadedCheckpoint:
    """Read a NeMo 2.0 checkpoint directory; every problem raises CheckpointError (a ValueError)."""
    with silenced():
        return _load_checkpoint(path, device, dtype, tensor_parallel, pipeline_parallel)


def _load_checkpoint(path, device, dtype, tensor_parallel: int, pipeline_parallel: int) -> LoadedCheckpoint:
    root = check_layout(Path(path))
    device = default_device(device)
    _check_parallelism(tensor_parallel, pipeline_parallel, device)
    arch = read_architecture(root / "context")
    dtype = serving_dtype(arch, device, dtype, root / "context" / "model.yaml")
    tokenizer = load_tokenizer(root / "context")
    cpu_compat.apply_cpu_shims()
    cpu_compat.ensure_model_parallel(tensor_parallel, pipeline_parallel)
    model = build_model(arch, tokenizer.vocab_size, dtype, device, tensor_parallel)
    _check_shapes(model, root / "weights", str(root / "context" / "model.yaml"))
    load_weights(model, root / "weights")
    if arch.layernorm_zero_centered_gamma:
        _fold_zero_centered_gamma(model)
    model.eval()
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, config=arch, model_id=root.name, device=device, dtype=dtype)
