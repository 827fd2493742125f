"""Load a NeMo 2.0 or Megatron-Bridge checkpoint into a megatron-core GPTModel (eval mode) and its tokenizer.

NeMo 2.0: `<ckpt>/context/model.yaml` (architecture), `<ckpt>/context/nemo_tokenizer/`
(tokenizer), `<ckpt>/weights/` (megatron-core dist_checkpointing, torch_dist), tensors under
the `module.` prefix, as NeMo's MegatronStrategy writes them. Megatron-Bridge: `iter_*/run_config.yaml`,
`iter_*/tokenizer/`, the torch_dist files in `iter_*/` itself, the same tensor names without `module.`
(layout.py finds them). megatron-core 0.19 keeps its common state inside the `.distcp` files (no
`common.pt`), which megatron-core 0.16's loader requires; such weights are read with torch's own
`torch.distributed.checkpoint`, which reads every tensor whichever megatron-core wrote it.

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
from .config import GPTArchitecture, build_transformer_config, read_architecture, read_bridge_architecture
from .errors import CheckpointError
from .layout import CheckpointLayout, detect_layout
from .tokenizer import Tokenizer, load_tokenizer

WEIGHTS_PREFIX = "module."  # NeMo 2.0's; Megatron-Bridge stores the same names without it
WEIGHTS_PREFIXES = {"nemo2": WEIGHTS_PREFIX, "megatron-bridge": ""}


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    tokenizer: Tokenizer
    config: GPTArchitecture
    model_id: str
    device: torch.device
    dtype: torch.dtype
    layout: CheckpointLayout | None = None  # provenance: .format ("nemo2" / "megatron-bridge"), .iteration, paths


def check_layout(path: Path) -> Path:
    """The checkpoint root (NeMo 2.0 dir or Megatron-Bridge run root); says what is missing."""
    return detect_layout(path).root


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


def _check_shapes(model: torch.nn.Module, weights_dir: Path, arch_source: str, prefix: str = WEIGHTS_PREFIX) -> None:
    """Compare every tensor's shape with the checkpoint's before loading: a mismatch names tensor and shapes."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor
    from torch.distributed.checkpoint import FileSystemReader

    try:
        stored = FileSystemReader(str(weights_dir)).read_metadata().state_dict_metadata
    except Exception:  # an unreadable .metadata is reported by load_weights with its own message
        return
    for key, sharded in model.sharded_state_dict(prefix=prefix).items():
        if not isinstance(sharded, ShardedTensor) or sharded.key not in stored:
            continue
        saved = tuple(getattr(stored[sharded.key], "size", ()))
        if saved and saved != tuple(sharded.global_shape):
            raise CheckpointError(
                f"The weights in {weights_dir} do not fit the architecture in {arch_source}: `{sharded.key}` is "
                f"stored with shape {list(saved)} but the config makes {list(sharded.global_shape)} (from "
                f"{_fields_shaping(sharded.key)}). That config does not describe these weights: use the config file "
                "written with them, or correct those fields."
            )


def _read_with_torch_dcp(model: torch.nn.Module, weights_dir: Path, prefix: str) -> dict[str, torch.Tensor]:
    """Every tensor of the model's sharded state dict, read with torch.distributed.checkpoint: each stored
    (global, layer-stacked) tensor in full, then this model's slice of it (megatron-core's ShardedTensor
    offsets; its leading `prepend_axis_num` axes index the stacked layers). Factories (the gated fc1's two
    halves) are built and merged back with megatron-core's own apply_factories / apply_factory_merges."""
    import torch.distributed.checkpoint as dcp
    from megatron.core.dist_checkpointing.dict_utils import (
        dict_list_map_inplace, extract_matching_values, nested_values,
    )
    from megatron.core.dist_checkpointing.mapping import (
        ShardedTensor, ShardedTensorFactory, apply_factories, apply_factory_merges,
    )
    from torch.distributed.checkpoint import FileSystemReader

    reader = FileSystemReader(str(weights_dir))
    stored = reader.read_metadata().state_dict_metadata
    sharded = model.sharded_state_dict(prefix=prefix)
    factories, _ = extract_matching_values(sharded, lambda x: isinstance(x, ShardedTensorFactory),
                                           return_lists_as_dicts=True)
    apply_factories(sharded)
    wanted = [value for value in nested_values(sharded) if isinstance(value, ShardedTensor)]
    missing = sorted({value.key for value in wanted if value.key not in stored})
    if missing:
        raise CheckpointError(f"The weights in {weights_dir} lack {', '.join(missing)}: they were written for another "
                              "architecture than the config describes, or the save was incomplete.")
    full = {value.key: torch.empty(tuple(value.global_shape), dtype=stored[value.key].properties.dtype)
            for value in wanted}
    dcp.load(full, storage_reader=reader)

    def local_slice(value):
        if not isinstance(value, ShardedTensor):
            return None  # ShardedObject (_extra_state: fp8 metadata, empty here)
        stacked = tuple(value.global_offset[:value.prepend_axis_num])
        rest = tuple(slice(offset, offset + size)
                     for offset, size in zip(value.global_offset[value.prepend_axis_num:], value.local_shape))
        return full[value.key][stacked + rest]

    dict_list_map_inplace(local_slice, sharded)
    merged = apply_factory_merges(sharded, factories)
    return {name.removeprefix(prefix): tensor for name, tensor in merged.items() if isinstance(tensor, torch.Tensor)}


def load_weights(model: torch.nn.Module, weights_dir: Path, prefix: str = WEIGHTS_PREFIX) -> None:
    """Fill `model` from a torch_dist checkpoint; a damaged or mismatched one raises CheckpointError."""
    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception

    if not (weights_dir / "metadata.json").is_file():
        raise CheckpointError(
            f"{weights_dir} holds no metadata.json, so it is not a megatron-core dist_checkpointing (torch_dist) "
            "checkpoint. Re-save the weights with NeMo 2.0 / Megatron-Bridge / megatron-core."
        )
    try:
        if (weights_dir / "common.pt").is_file():  # megatron-core <= 0.18 layout: its own loader
            state = dist_checkpointing.load(model.sharded_state_dict(prefix=prefix), str(weights_dir))
            stripped = {key.removeprefix(prefix): value for key, value in state.items()}
        else:  # megatron-core 0.19+ (common state inside the .distcp): torch's reader
            stripped = _read_with_torch_dcp(model, weights_dir, prefix)
            unread = [key for key in model.load_state_dict(stripped, strict=False).missing_keys
                      if not key.endswith("_extra_state")]
            if unread:
                raise CheckpointError(f"The weights in {weights_dir} did not fill {', '.join(unread)}; the checkpoint "
                                      "does not match its config. Copy or export it again.")
            return
        model.load_state_dict(stripped, strict=False)
    except CheckpointError:
        raise
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
    layout = detect_layout(Path(path))
    device = default_device(device)
    _check_parallelism(tensor_parallel, pipeline_parallel, device)
    if layout.format == "nemo2":
        arch = read_architecture(layout.config_file)
        config_name = layout.config_file / "model.yaml"
    else:
        arch = read_bridge_architecture(layout.config_file)
        config_name = layout.config_file
    dtype = serving_dtype(arch, device, dtype, config_name)
    if layout.format == "megatron-bridge" and not layout.tokenizer_dir.is_dir():
        raise CheckpointError(
            f"{layout.tokenizer_dir.parent} has no tokenizer/ folder. Megatron-Bridge saves the tokenizer's files "
            "there; run_config.yaml's `tokenizer.tokenizer_model` names where they came from on the writing machine, "
            "which is not read (serving is offline). Copy those files into tokenizer/."
        )
    tokenizer = load_tokenizer(layout.tokenizer_dir)
    cpu_compat.apply_cpu_shims()
    cpu_compat.ensure_model_parallel(tensor_parallel, pipeline_parallel)
    model = build_model(arch, tokenizer.vocab_size, dtype, device, tensor_parallel)
    prefix = WEIGHTS_PREFIXES[layout.format]
    _check_shapes(model, layout.weights_dir, str(config_name), prefix)
    load_weights(model, layout.weights_dir, prefix)
    if arch.layernorm_zero_centered_gamma:
        _fold_zero_centered_gamma(model)
    model.eval()
    return LoadedCheckpoint(model=model, tokenizer=tokenizer, config=arch, model_id=layout.root.name, device=device,
                            dtype=dtype, layout=layout)
