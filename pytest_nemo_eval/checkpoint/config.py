"""The GPT architecture of a NeMo 2.0 checkpoint, read from `context/model.yaml`.

NeMo 2.0 serializes the model as a fiddle config: `model.yaml` has a `config:`
mapping whose keys are megatron-core TransformerConfig/GPTConfig field names
(num_layers, hidden_size, num_query_groups, normalization, activation_func,
position_embedding_type, rotary_base, ...). We read only what the forward pass
needs; a field we cannot honour raises CheckpointError naming the field and file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import CheckpointError

_ACTIVATIONS = {
    "torch.nn.functional.silu": torch.nn.functional.silu,
    "torch.nn.functional.gelu": torch.nn.functional.gelu,
    "megatron.core.activations.fast_gelu": torch.nn.functional.gelu,
    "megatron.core.fusions.fused_bias_gelu.bias_gelu_impl": torch.nn.functional.gelu,
}
# Fields that change the architecture in ways this loader does not implement: must be off/absent.
_MUST_BE_FALSY = (
    "num_moe_experts", "multi_latent_attention", "qk_layernorm", "mtp_num_layers",
    "apply_rope_fusion_for_yarn", "moe_layer_freq", "heterogeneous_layers_config_path",
)


class GPTArchitecture(BaseModel):
    """What building a megatron-core GPTModel needs; field names follow megatron-core."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int | None = None
    seq_length: int
    normalization: Literal["LayerNorm", "RMSNorm"] = "LayerNorm"
    layernorm_epsilon: float = 1e-5
    activation: Literal["silu", "gelu"] = "gelu"
    gated_linear_unit: bool = False
    position_embedding_type: Literal["rope", "learned_absolute"] = "learned_absolute"
    rotary_base: float = 10000.0
    rotary_percent: float = 1.0
    seq_len_interpolation_factor: float | None = None
    add_bias_linear: bool = True
    add_qkv_bias: bool = False
    share_embeddings_and_output_weights: bool = True
    vocab_size: int | None = None
    make_vocab_size_divisible_by: int = 128

    def padded_vocab_size(self, tokenizer_vocab_size: int) -> int:
        """Megatron pads the embedding table to a multiple of make_vocab_size_divisible_by."""
        size = self.vocab_size or tokenizer_vocab_size
        multiple = max(1, self.make_vocab_size_divisible_by)
        return int(math.ceil(size / multiple) * multiple)


def _read_config_mapping(context_dir: Path) -> tuple[dict[str, Any], Path]:
    """The `config:` mapping of context/model.yaml; (mapping, file it came from)."""
    yaml_path = context_dir / "model.yaml"
    if not yaml_path.is_file():
        also = " (io.json alone is not read: export model.yaml too)" if (context_dir / "io.json").is_file() else ""
        raise CheckpointError(
            f"{context_dir} has no model.yaml{also}, so the model architecture is unknown. "
            "A NeMo 2.0 checkpoint's context/ folder holds model.yaml with a `config:` mapping."
        )
    try:
        document = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{yaml_path} is not valid YAML ({exc}); re-export the checkpoint.") from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise CheckpointError(f"{yaml_path} has no `config:` mapping with the model architecture.")
    return document["config"], yaml_path


def _activation_name(value: Any, source: Path) -> str:
    target = value.get("_target_") if isinstance(value, dict) else value
    if target is None:
        return "gelu"
    if target not in _ACTIVATIONS:
        raise CheckpointError(
            f"Unsupported architecture field `activation_func: {target}` in {source}. "
            f"Supported: {', '.join(sorted(_ACTIVATIONS))}."
        )
    return _ACTIVATIONS[target].__name__


def read_architecture(context_dir: Path) -> GPTArchitecture:
    """Parse and validate the architecture; errors name the field and the file."""
    raw, source = _read_config_mapping(Path(context_dir))
    for field in _MUST_BE_FALSY:
        if raw.get(field):
            raise CheckpointError(
                f"Unsupported architecture field `{field}: {raw[field]}` in {source}: this loader serves "
                "dense GPT models (no MoE, MLA, QK-norm or multi-token prediction)."
            )
    values = {name: raw[name] for name in GPTArchitecture.model_fields if raw.get(name) is not None}
    values["activation"] = _activation_name(raw.get("activation_func"), source)
    values.setdefault("num_query_groups", raw.get("num_attention_heads"))
    if raw.get("ffn_hidden_size") is None and raw.get("hidden_size"):
        values["ffn_hidden_size"] = 4 * raw["hidden_size"]
    if values.get("seq_length") is None and raw.get("max_position_embeddings"):
        values["seq_length"] = raw["max_position_embeddings"]
    try:
        return GPTArchitecture(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"`{'.'.join(map(str, err['loc']))}`: {err['msg']} (got {err.get('input')!r})" for err in exc.errors()
        )
        raise CheckpointError(f"Unsupported or missing architecture field in {source}: {problems}.") from None


def architecture_to_yaml_config(arch: GPTArchitecture) -> dict[str, Any]:
    """The `config:` mapping as NeMo writes it (activation as a fiddle `_call_: false` target)."""
    values = arch.model_dump(exclude={"activation"})
    values["activation_func"] = {"_target_": f"torch.nn.functional.{arch.activation}", "_call_": False}
    values["_target_"] = "nemo.collections.llm.gpt.model.base.GPTConfig"
    return values


def build_transformer_config(arch: GPTArchitecture, dtype: torch.dtype, use_cpu_initialization: bool):
    """megatron-core TransformerConfig for inference/training of this architecture."""
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(
        num_layers=arch.num_layers, hidden_size=arch.hidden_size, ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_attention_heads, num_query_groups=arch.num_query_groups,
        kv_channels=arch.kv_channels, normalization=arch.normalization, layernorm_epsilon=arch.layernorm_epsilon,
        gated_linear_unit=arch.gated_linear_unit, activation_func=_ACTIVATIONS[f"torch.nn.functional.{arch.activation}"],
        add_bias_linear=arch.add_bias_linear, add_qkv_bias=arch.add_qkv_bias,
        hidden_dropout=0.0, attention_dropout=0.0, use_cpu_initialization=use_cpu_initialization,
        params_dtype=dtype, bf16=dtype == torch.bfloat16, pipeline_dtype=dtype,
    )
