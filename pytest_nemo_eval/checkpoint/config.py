"""The GPT architecture of a NeMo 2.0 checkpoint, read from NeMo's full config dump `context/model.yaml`.

NeMo 2.0 serializes the model as a fiddle config: `model.yaml` has a `config:`
mapping whose keys are the fields of the config dataclass (NeMo's GPTConfig or a
family subclass such as Llama31Config, over megatron-core's TransformerConfig),
every field written, defaults included. config_fields.py says which fields are
applied, which are neutral for inference and which must keep their default; a
field we cannot honour raises CheckpointError naming the file, field, value and
what is supported. Older checkpoints with only `io.json` are read through NeMo's
own `load_context` when nemo-toolkit is importable.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from . import config_fields as fields
from .errors import CheckpointError

Activation = Literal["silu", "gelu", "gelu_tanh", "quick_gelu", "squared_relu", "relu"]
# fiddle `_target_` of activation_func -> our name. F.gelu is a builtin, so fiddle writes torch._C._nn.gelu.
ACTIVATION_TARGETS: dict[str, Activation] = {
    "torch.nn.functional.silu": "silu",
    "torch._C._nn.silu": "silu",
    "torch.nn.functional.gelu": "gelu",
    "torch._C._nn.gelu": "gelu",
    "torch.nn.functional.relu": "relu",
    "torch.relu": "relu",
    "megatron.core.activations.fast_gelu": "gelu_tanh",
    "megatron.core.fusions.fused_bias_gelu.bias_gelu_impl": "gelu_tanh",
    "nemo.collections.llm.fn.activation.openai_gelu": "gelu_tanh",
    "megatron.core.activations.quick_gelu": "quick_gelu",
    "nemo.collections.llm.fn.activation.quick_gelu": "quick_gelu",
    "megatron.core.activations.squared_relu": "squared_relu",
    "nemo.collections.llm.fn.activation.squared_relu": "squared_relu",
}


def activation_function(name: Activation):
    """The callable for an activation name: megatron-core's own functions where it has them."""
    from megatron.core import activations

    return {
        "silu": torch.nn.functional.silu, "gelu": torch.nn.functional.gelu, "relu": torch.nn.functional.relu,
        "gelu_tanh": activations.fast_gelu, "quick_gelu": activations.quick_gelu,
        "squared_relu": activations.squared_relu,
    }[name]


class Llama3RopeScaling(BaseModel):
    """Llama 3.1/3.2 RoPE frequency scaling, as NeMo's Llama31Config applies it to inv_freq."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    old_context_len: int = 8192


class GPTArchitecture(BaseModel):
    """What building a megatron-core GPTModel needs; field names follow megatron-core / NeMo."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int | None = None
    seq_length: int  # the context served: NeMo's seq_length, capped at the sliding window when there is one
    normalization: Literal["LayerNorm", "RMSNorm"] = "LayerNorm"
    layernorm_epsilon: float = 1e-5
    layernorm_zero_centered_gamma: bool = False
    activation: Activation = "gelu"
    gated_linear_unit: bool = False
    position_embedding_type: Literal["rope", "learned_absolute"] = "learned_absolute"
    rotary_base: float = 10000.0
    rotary_percent: float = 1.0
    seq_len_interpolation_factor: float | None = None
    rope_scaling: Llama3RopeScaling | None = None
    window_size: int | None = None  # sliding-window attention: tokens attended (seq_length never exceeds it)
    softmax_scale: float | None = None
    add_bias_linear: bool = True
    add_qkv_bias: bool = False
    share_embeddings_and_output_weights: bool = True
    vocab_size: int | None = None
    make_vocab_size_divisible_by: int = 128
    # precision knobs (megatron-core defaults); they matter only below fp32, i.e. on the CUDA (bf16) path
    attention_softmax_in_fp32: bool = True
    apply_query_key_layer_scaling: bool = False
    disable_bf16_reduced_precision_matmul: bool = False
    fp32_residual_connection: bool = False

    def padded_vocab_size(self, tokenizer_vocab_size: int, tensor_parallel: int = 1) -> int:
        """The embedding rows: vocab_size as written, else padded as NeMo's get_vocab_size does
        (to a multiple of make_vocab_size_divisible_by x tensor parallel size)."""
        if self.vocab_size:
            return self.vocab_size
        multiple = max(1, self.make_vocab_size_divisible_by) * max(1, tensor_parallel)
        return int(math.ceil(tokenizer_vocab_size / multiple) * multiple)


def _read_yaml_config(yaml_path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{yaml_path} is not valid YAML ({exc}); re-export the checkpoint.") from None
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise CheckpointError(f"{yaml_path} has no `config:` mapping with the model architecture.")
    return document["config"]


def _config_from_io_json(context_dir: Path) -> dict[str, Any]:
    """An io.json-only checkpoint (older NeMo 2.0): NeMo's own load_context rebuilds the config."""
    try:
        from nemo.lightning.io import load_context  # noqa: PLC0415 - optional, heavy
    except ImportError:
        raise CheckpointError(
            f"{context_dir} has io.json but no model.yaml, and io.json (a fiddle graph) is read only through NeMo's "
            "own load_context, which needs nemo-toolkit. Either `pip install nemo-toolkit` here, or write model.yaml "
            "once where NeMo is installed: `python -c \"from nemo.lightning.io import load_context; "
            f"load_context('{context_dir}', build=True).io_dump('{context_dir}', yaml_attrs=['model'])\"` "
            "(that is how NeMo writes model.yaml beside io.json)."
        ) from None
    import dataclasses

    try:  # build=False: building runs TransformerConfig's checks, which want Transformer Engine / a GPU
        config = load_context(str(context_dir), subpath="model.config", build=False)
    except Exception as exc:  # NeMo raises many types for a bad io.json
        raise CheckpointError(f"NeMo's load_context could not read {context_dir / 'io.json'}: {exc}.") from None
    cls = config.__fn_or_cls__
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # the class defaults, as model.yaml would list them
        if field.default is not dataclasses.MISSING:
            values[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            values[field.name] = field.default_factory()
    values.update(config.__arguments__)
    values = {name: _as_yaml_value(value) for name, value in values.items()}
    values["_target_"] = f"{cls.__module__}.{cls.__qualname__}"
    return values


def _as_yaml_value(value: Any) -> Any:
    """A value of NeMo's config object in model.yaml's spelling (functions/classes as `_target_`)."""
    target = getattr(value, "__fn_or_cls__", None)  # a nested fiddle Config/Partial
    if target is not None:
        return {"_target_": f"{target.__module__}.{target.__qualname__}"}
    if isinstance(value, torch.dtype):
        return {"_call_": False, "_target_": str(value)}
    if callable(value) and hasattr(value, "__name__"):
        module = getattr(value, "__module__", None) or "torch._C._nn"
        return {"_call_": False, "_target_": f"{module}.{value.__name__}"}
    return value


def read_config_mapping(context_dir: Path) -> tuple[dict[str, Any], Path]:
    """The model config (field -> value as model.yaml writes it) and the file it came from."""
    yaml_path = context_dir / "model.yaml"
    if yaml_path.is_file():
        return _read_yaml_config(yaml_path), yaml_path
    if (context_dir / "io.json").is_file():
        return _config_from_io_json(context_dir), context_dir / "io.json"
    raise CheckpointError(
        f"{context_dir} has no model.yaml (nor io.json), so the model architecture is unknown. "
        "A NeMo 2.0 checkpoint's context/ folder holds model.yaml with a `config:` mapping."
    )


def _target(value: Any) -> str | None:
    return value.get("_target_") if isinstance(value, dict) else value


def _refuse(source: Path, field: str, value: Any, supported: str) -> CheckpointError:
    return CheckpointError(
        f"Unsupported architecture field `{field}: {value}` in {source}: this loader serves {supported}. "
        "Serve this model with NeMo itself, or convert it to a supported family."
    )


def _check_fields(raw: dict[str, Any], source: Path) -> None:
    """Every field is applied, neutral, at a supported value, or off; else one error naming it."""
    experts = raw.get("num_moe_experts")
    if not fields.is_off(experts):
        raise _refuse(source, "num_moe_experts", experts,
                      "dense models only (mixture-of-experts models such as Mixtral are not supported)")
    config_target = raw.get("_target_")
    if config_target and config_target.startswith("megatron.bridge."):
        if config_target not in fields.SUPPORTED_BRIDGE_PROVIDERS:
            raise _refuse(source, "_target_", config_target,
                          f"GPT models ({', '.join(sorted(fields.SUPPORTED_BRIDGE_PROVIDERS))}); this run_config.yaml's "
                          "`model:` is another kind of model")
    elif config_target:
        module = config_target.rsplit(".", 1)[0]
        if module not in fields.SUPPORTED_CONFIG_MODULES:
            families = "; ".join(f"{m} ({what})" for m, what in fields.SUPPORTED_CONFIG_MODULES.items())
            raise _refuse(source, "_target_", config_target, f"configs of these NeMo modules: {families}")
    spec = _target(raw.get("transformer_layer_spec"))
    if spec is not None and spec not in fields.STANDARD_LAYER_SPECS:
        raise _refuse(source, "transformer_layer_spec", spec,
                      f"the standard GPT layer specs ({', '.join(sorted(fields.STANDARD_LAYER_SPECS))})")
    for field, value in raw.items():
        if field in fields.REQUIRED:
            allowed, supported = fields.REQUIRED[field]
            if value not in allowed:
                raise _refuse(source, field, value, supported)
        elif field not in fields.APPLIED and not fields.is_neutral(field) and not fields.is_off(value):
            raise CheckpointError(
                f"Unknown architecture field `{field}: {value}` in {source}: this loader does not know whether it "
                "changes the model, so it refuses rather than serve something silently different. Set it to its "
                "off value if it is a training-only setting, or report the field to pytest-nemo-eval."
            )


def _activation(raw: dict[str, Any], source: Path) -> Activation:
    target = _target(raw.get("activation_func"))
    if target is None:
        return _computed_activation("gelu", raw, source)  # megatron-core's TransformerConfig default (F.gelu)
    if target not in ACTIVATION_TARGETS:
        raise _refuse(source, "activation_func", target,
                      f"these activations: {', '.join(sorted(ACTIVATION_TARGETS))}")
    return _computed_activation(ACTIVATION_TARGETS[target], raw, source)


# megatron-core's F.gelu / F.silu / F.relu checks compare the function object; these are the names they accept.
_TE_ACTIVATIONS: dict[str, Activation] = {"gelu": "gelu_tanh", "silu": "silu", "relu": "relu"}


def _computed_activation(written: Activation, raw: dict[str, Any], source: Path) -> Activation:
    """The activation megatron-core 0.16's MLP computes for `written` under the config's fusion flags.

    bias_activation_fusion (transformer/mlp.py forward): GELU goes through bias_gelu_impl (bias_geglu_impl when
    gated), both the tanh approximation (fusions/fused_bias_gelu.py); gated SiLU through bias_swiglu_impl, the
    same silu(a) * b; any other pairing megatron-core refuses (TransformerConfig.__post_init__) or raises in
    forward. Transformer Engine activations (use_te_activation_func, or the op fuser's TEFusedMLP) map F.gelu to
    TE's GELU/GEGLU, also tanh. So a config that writes exact GELU with a fusion flag computes GELU-tanh.
    """
    fused = bool(raw.get("bias_activation_fusion"))
    te_ops = bool(raw.get("use_te_activation_func")) or bool(raw.get("use_transformer_engine_op_fuser"))
    gated = bool(raw.get("gated_linear_unit"))
    if fused and raw.get("use_te_activation_func"):
        raise _refuse(source, "bias_activation_fusion", True, "bias_activation_fusion or use_te_activation_func, "
                      "not both (megatron-core's TransformerConfig refuses the pair)")
    if fused:
        if written == "gelu" and (gated or raw.get("add_bias_linear", True)):
            return "gelu_tanh"
        if written == "silu" and gated:
            return "silu"
        raise _refuse(source, "bias_activation_fusion", True, "fused activations megatron-core 0.16 computes: GELU "
                      f"with a bias or gated, or gated SiLU (this config: {written}, gated_linear_unit={gated}, "
                      f"add_bias_linear={raw.get('add_bias_linear', True)})")
    if te_ops:
        if written not in _TE_ACTIVATIONS:
            raise _refuse(source, "use_te_activation_func", True,
                          "Transformer Engine activations of gelu, silu or relu")
        return _TE_ACTIVATIONS[written]
    return written


def _window(raw: dict[str, Any], source: Path) -> int | None:
    """The sliding window's left size, or None; only a causal window [left, 0] on every layer."""
    window = raw.get("window_size")
    if window is None:
        return None
    if isinstance(window, int):
        window = [window, 0]
    if not (isinstance(window, (list, tuple)) and len(window) == 2 and window[1] in (0, -1, None)
            and isinstance(window[0], int) and window[0] > 0):
        raise _refuse(source, "window_size", window, "a causal sliding window [left, 0] or null")
    if not fields.is_off(raw.get("window_attn_skip_freq")):
        raise _refuse(source, "window_attn_skip_freq", raw["window_attn_skip_freq"],
                      "a sliding window on every layer (window_attn_skip_freq null)")
    return int(window[0])


def _rope_scaling(raw: dict[str, Any]) -> Llama3RopeScaling | None:
    """Llama31Config (and Llama32Config, its subclass) carry scale_factor & co.; NeMo rescales inv_freq with them.
    Megatron-Bridge keeps only `rope_scaling: true` and `rope_scaling_factor`, which its provider passes to
    megatron-core's GPTModel; RotaryEmbedding._apply_scaling then uses its defaults for the rest
    (low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192), as Llama 3.1 has."""
    if raw.get("position_embedding_type", "rope") != "rope":
        return None
    if raw.get("rope_scaling") is True:
        return Llama3RopeScaling(factor=raw.get("rope_scaling_factor", 8.0))
    if raw.get("scale_factor") is None:
        return None
    return Llama3RopeScaling(
        factor=raw["scale_factor"], low_freq_factor=raw.get("low_freq_factor", 1.0),
        high_freq_factor=raw.get("high_freq_factor", 4.0), old_context_len=raw.get("old_context_len", 8192),
    )


def _seq_length(raw: dict[str, Any], window: int | None, source: Path) -> int:
    seq_length = raw.get("seq_length") or raw.get("max_position_embeddings")
    if seq_length is None and window is None:
        raise CheckpointError(
            f"`seq_length: null` in {source}: the model's context length is unknown (NeMo's Mistral importer writes "
            "the Hugging Face sliding_window there, which is null for Mistral v0.2+). Set `seq_length:` in "
            "model.yaml's config to the model's context (Hugging Face max_position_embeddings, e.g. 32768)."
        )
    # Past the window, attention differs from full causal attention: serve only where they agree.
    return min(x for x in (seq_length, window) if x is not None)


def read_architecture(context_dir: Path) -> GPTArchitecture:
    """NeMo 2.0 front end: context/model.yaml (or io.json); errors name the field and the file."""
    raw, source = read_config_mapping(Path(context_dir))
    return architecture_from_fields(raw, source)


def read_bridge_architecture(run_config: Path) -> GPTArchitecture:
    """Megatron-Bridge front end: the `model:` section of iter_*/run_config.yaml (GPTModelProvider's fields,
    every one written, as NeMo's dump does); the same field table and refusals as NeMo 2.0."""
    run_config = Path(run_config)
    try:
        document = yaml.safe_load(run_config.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{run_config} is not valid YAML ({exc}); copy the checkpoint again.") from None
    model = document.get("model") if isinstance(document, dict) else None
    if not isinstance(model, dict):
        raise CheckpointError(f"{run_config} has no `model:` mapping with the model architecture (Megatron-Bridge "
                              "writes the model provider's fields there).")
    return architecture_from_fields(model, run_config)


def architecture_from_fields(raw: dict[str, Any], source: Path) -> GPTArchitecture:
    """The one architecture reader: every field checked against config_fields' table, then parsed."""
    _check_fields(raw, source)
    window = _window(raw, source)
    plain = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
             "kv_channels", "normalization", "layernorm_epsilon", "layernorm_zero_centered_gamma",
             "gated_linear_unit", "position_embedding_type", "rotary_base", "rotary_percent",
             "seq_len_interpolation_factor", "softmax_scale", "add_bias_linear", "add_qkv_bias",
             "share_embeddings_and_output_weights", "vocab_size", "make_vocab_size_divisible_by",
             "attention_softmax_in_fp32", "apply_query_key_layer_scaling", "disable_bf16_reduced_precision_matmul",
             "fp32_residual_connection")
    values: dict[str, Any] = {name: raw[name] for name in plain if raw.get(name) is not None}
    values["activation"] = _activation(raw, source)
    values["rope_scaling"] = _rope_scaling(raw)
    values["window_size"] = window
    values.setdefault("num_query_groups", raw.get("num_attention_heads"))
    if raw.get("ffn_hidden_size") is None and raw.get("hidden_size"):
        values["ffn_hidden_size"] = 4 * raw["hidden_size"]
    try:
        values["seq_length"] = _seq_length(raw, window, source)
        return GPTArchitecture(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"`{'.'.join(map(str, err['loc']))}`: {err['msg']} (got {err.get('input')!r})" for err in exc.errors()
        )
        raise CheckpointError(f"Unsupported or missing architecture field in {source}: {problems}.") from None


def build_transformer_config(arch: GPTArchitecture, dtype: torch.dtype, use_cpu_initialization: bool):
    """megatron-core TransformerConfig for inference/training of this architecture.

    Zero-centred LayerNorm gamma is not passed: the loader folds it into the weights
    (w + 1), which megatron-core's local (non-Transformer-Engine) norms do not offer.
    """
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(
        num_layers=arch.num_layers, hidden_size=arch.hidden_size, ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_attention_heads, num_query_groups=arch.num_query_groups,
        kv_channels=arch.kv_channels, normalization=arch.normalization, layernorm_epsilon=arch.layernorm_epsilon,
        gated_linear_unit=arch.gated_linear_unit, activation_func=activation_function(arch.activation),
        add_bias_linear=arch.add_bias_linear, add_qkv_bias=arch.add_qkv_bias, softmax_scale=arch.softmax_scale,
        attention_softmax_in_fp32=arch.attention_softmax_in_fp32,
        apply_query_key_layer_scaling=arch.apply_query_key_layer_scaling,
        disable_bf16_reduced_precision_matmul=arch.disable_bf16_reduced_precision_matmul,
        fp32_residual_connection=arch.fp32_residual_connection,
        hidden_dropout=0.0, attention_dropout=0.0, use_cpu_initialization=use_cpu_initialization,
        params_dtype=dtype, bf16=dtype == torch.bfloat16, pipeline_dtype=dtype,
    )
