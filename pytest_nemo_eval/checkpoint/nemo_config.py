"""Write `context/model.yaml` the way NeMo's io_dump writes it: every config field, defaults included.

NeMo serializes the config dataclass (GPTConfig or a family subclass, over
megatron-core's TransformerConfig) with fiddle: every field is written; functions
and dtypes become `{_target_: dotted.name, _call_: false}`; enums become their
class with `_call_: true` (fiddle's YAML drops the value). The demo checkpoint is
written with this, so every test reads the real format; the tests' family writer
uses it for Llama/Mistral/Qwen2/Nemotron/Starcoder2-shaped checkpoints.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import torch

from .config import GPTArchitecture

MODEL_TARGET = "nemo.collections.llm.gpt.model.base.GPTModel"
CONFIG_TARGET = "nemo.collections.llm.gpt.model.base.GPTConfig"
ACTIVATION_TARGET = {
    "silu": "torch.nn.functional.silu", "gelu": "torch._C._nn.gelu", "relu": "torch.nn.functional.relu",
    "gelu_tanh": "nemo.collections.llm.fn.activation.openai_gelu",
    "quick_gelu": "nemo.collections.llm.fn.activation.quick_gelu",
    "squared_relu": "nemo.collections.llm.fn.activation.squared_relu",
}
# GPTConfig's own fields (beyond TransformerConfig), with NeMo's defaults (nemo 2.7 gpt/model/base.py).
GPTCONFIG_DEFAULTS: dict[str, Any] = {
    "fp16_lm_cross_entropy": False, "parallel_output": True, "share_embeddings_and_output_weights": True,
    "make_vocab_size_divisible_by": 128, "position_embedding_type": "learned_absolute", "rotary_base": 10000,
    "rotary_percent": 1.0, "seq_len_interpolation_factor": None, "seq_length": 1024,
    "attention_softmax_in_fp32": False, "masked_softmax_fusion": True, "cross_entropy_loss_fusion": True,
    "gradient_accumulation_fusion": False, "deallocate_pipeline_outputs": True,
    "scatter_embedding_sequence_parallel": True, "tp_comm_overlap_cfg": None,
    "use_transformer_engine_full_layer_spec": False, "use_transformer_engine_op_fuser": None,
    "transformer_layer_spec": {"_call_": False, "_target_": "nemo.collections.llm.gpt.model.base.default_layer_spec"},
    "forward_step_fn": {"_call_": False, "_target_": "nemo.collections.llm.gpt.model.base.gpt_forward_step"},
    "data_step_fn": {"_call_": False, "_target_": "nemo.collections.llm.gpt.model.base.gpt_data_step"},
    "generation_config": None, "vocab_size": None,
}
TOKENIZER_SECTION = {
    "_target_": "nemo.collections.common.tokenizers.huggingface.auto_tokenizer.AutoTokenizer",
    "additional_special_tokens": [], "bos_token": None, "chat_template": None, "cls_token": None,
    "eos_token": None, "include_special_tokens": False, "mask_token": None, "merges_file": None,
    "pad_token": None, "pretrained_model_name": "nemo_tokenizer", "sep_token": None, "trust_remote_code": False,
    "unk_token": None, "use_fast": True, "vocab_file": None,
}


def _fiddle_value(value: Any) -> Any:
    """A default as fiddle's YAML writes it."""
    if isinstance(value, torch.dtype):
        return {"_call_": False, "_target_": str(value)}
    if isinstance(value, enum.Enum):
        return {"_call_": True, "_target_": f"{type(value).__module__}.{type(value).__qualname__}"}
    if callable(value):
        module = getattr(value, "__module__", None) or "torch._C._nn"
        return {"_call_": False, "_target_": f"{module}.{value.__name__}"}
    if isinstance(value, tuple):
        return [_fiddle_value(item) for item in value]
    return value


def _transformer_config_defaults() -> dict[str, Any]:
    from megatron.core.transformer.transformer_config import TransformerConfig

    values = {}
    for field in dataclasses.fields(TransformerConfig):
        if field.default is not dataclasses.MISSING:
            values[field.name] = _fiddle_value(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            values[field.name] = _fiddle_value(field.default_factory())
        else:
            values[field.name] = None
    return values


def architecture_fields(arch: GPTArchitecture) -> dict[str, Any]:
    """The NeMo config fields that state this architecture (names as NeMo writes them)."""
    values = arch.model_dump(exclude={"activation", "rope_scaling", "window_size"})
    values["activation_func"] = {"_call_": False, "_target_": ACTIVATION_TARGET[arch.activation]}
    values["window_size"] = [arch.window_size, 0] if arch.window_size else None
    if arch.rope_scaling is not None:
        scaling = arch.rope_scaling
        values.update(scale_factor=scaling.factor, low_freq_factor=scaling.low_freq_factor,
                      high_freq_factor=scaling.high_freq_factor, old_context_len=scaling.old_context_len)
    return values


def full_config_dump(arch: GPTArchitecture | None, *, config_target: str = CONFIG_TARGET,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `config:` mapping of model.yaml: TransformerConfig and GPTConfig defaults, then this architecture
    (None: defaults only), then `overrides` (a family's class defaults and what its importer sets)."""
    stated = architecture_fields(arch) if arch is not None else {}
    config = {**_transformer_config_defaults(), **GPTCONFIG_DEFAULTS, **stated, **(overrides or {})}
    config["params_dtype"] = {"_call_": False, "_target_": "torch.float32"}
    config["_target_"] = config_target
    return dict(sorted(config.items()))


def model_yaml_document(arch: GPTArchitecture, *, model_target: str = MODEL_TARGET, config_target: str = CONFIG_TARGET,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole model.yaml document (model, config, tokenizer), as NeMo's io_dump(yaml_attrs=["model"]) writes it."""
    return {
        "_target_": model_target,
        "config": full_config_dump(arch, config_target=config_target, overrides=overrides),
        "model_context_managers": [],
        "model_transform": None,
        "optim": None,
        "tokenizer": dict(TOKENIZER_SECTION),
    }
