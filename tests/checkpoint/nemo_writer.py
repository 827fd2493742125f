"""Test-side writer: a Hugging Face model -> a NeMo 2.0 checkpoint laid out the way NeMo's importer writes it.

Follows NeMo 2.7's importers (nemo/collections/llm/gpt/model/{llama,mistral,qwen2,nemotron,starcoder2}.py):
their `config` property (HF config -> NeMo config fields, over the family config class's defaults) and
their `convert_state` (HF names -> Transformer Engine names, q/k/v merged per query group as
TransformFns.merge_qkv does, gate/up concatenated as merge_fc1). The result is written as NeMo writes it:
context/model.yaml with every field (pytest_nemo_eval.checkpoint.nemo_config.full_config_dump supplies the
megatron-core and GPTConfig defaults), context/nemo_tokenizer/ from the tokenizer's save_pretrained, and
weights/ in torch_dist with layers stacked under `module.decoder.layers.` (megatron-core dist_checkpointing,
each layer one fragment of the stacked tensor, as megatron's sharded_state_dict declares them).

Independent of the loader under test: nothing here builds a megatron-core model.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from pytest_nemo_eval.checkpoint.nemo_config import TOKENIZER_SECTION, full_config_dump

def fiddle_function(target: str) -> dict[str, Any]:
    return {"_call_": False, "_target_": target}


@dataclass
class Family:
    """One NeMo model family: its config/model classes, class defaults, and how its importer maps a HF model."""

    name: str
    model_target: str
    config_target: str
    class_defaults: dict[str, Any]
    importer_fields: Callable[[Any], dict[str, Any]]  # HF config -> fields the importer sets
    gated_mlp: bool = True  # HF gate_proj/up_proj (merged into linear_fc1) vs up_proj or c_fc alone
    mlp_names: tuple[str, str] = ("up_proj", "down_proj")
    mapping: dict[str, str] | None = None  # a plain rename table (`*` = layer index) instead of the Llama-style one


def _llama_fields(source) -> dict[str, Any]:
    rope = getattr(source, "rope_parameters", None) or getattr(source, "rope_scaling", None) or {}
    fields = {
        "num_layers": source.num_hidden_layers, "hidden_size": source.hidden_size,
        "ffn_hidden_size": source.intermediate_size, "num_attention_heads": source.num_attention_heads,
        "num_query_groups": source.num_key_value_heads, "init_method_std": source.initializer_range,
        "layernorm_epsilon": source.rms_norm_eps, "rotary_base": rope.get("rope_theta", getattr(source, "rope_theta", None)),
        "seq_length": source.max_position_embeddings, "vocab_size": source.vocab_size,
        "share_embeddings_and_output_weights": bool(source.tie_word_embeddings),
        "kv_channels": getattr(source, "head_dim", None), "make_vocab_size_divisible_by": 64,
    }
    if rope.get("rope_type") == "llama3":
        fields.update(scale_factor=rope["factor"], low_freq_factor=rope["low_freq_factor"],
                      high_freq_factor=rope["high_freq_factor"], old_context_len=rope["original_max_position_embeddings"])
    return fields


def _starcoder_fields(source) -> dict[str, Any]:
    return {
        "num_layers": source.n_layer, "hidden_size": source.n_embd, "ffn_hidden_size": source.n_inner,
        "num_attention_heads": source.n_head, "init_method_std": source.initializer_range,
        "seq_length": source.n_positions, "layernorm_epsilon": source.layer_norm_epsilon,
        "make_vocab_size_divisible_by": _divisible_by(source.vocab_size), "share_embeddings_and_output_weights": False,
        "num_query_groups": 1 if source.multi_query else source.n_head,
    }


def _divisible_by(vocab_size: int) -> int:
    base = 128
    while vocab_size % base:
        base //= 2
    return base


def _mistral_fields(source) -> dict[str, Any]:
    rope = getattr(source, "rope_parameters", None) or {}
    window = getattr(source, "sliding_window", None)
    return {
        "num_layers": source.num_hidden_layers, "hidden_size": source.hidden_size,
        "ffn_hidden_size": source.intermediate_size, "num_attention_heads": source.num_attention_heads,
        "num_query_groups": source.num_key_value_heads, "init_method_std": source.initializer_range,
        "seq_length": window,  # NeMo's importer: seq_length=source.sliding_window (null when there is none)
        "layernorm_epsilon": source.rms_norm_eps, "rotary_base": rope.get("rope_theta", getattr(source, "rope_theta", None)),
        "make_vocab_size_divisible_by": _divisible_by(source.vocab_size),
        "window_size": [window, 0] if window is not None else None,
        "kv_channels": getattr(source, "head_dim", None), "share_embeddings_and_output_weights": False,
    }


def _qwen2_fields(source) -> dict[str, Any]:
    rope = getattr(source, "rope_parameters", None) or {}
    return {
        "num_layers": source.num_hidden_layers, "hidden_size": source.hidden_size,
        "ffn_hidden_size": source.intermediate_size, "num_attention_heads": source.num_attention_heads,
        "num_query_groups": source.num_key_value_heads, "init_method_std": source.initializer_range,
        "layernorm_epsilon": source.rms_norm_eps, "gated_linear_unit": True, "make_vocab_size_divisible_by": 128,
        "rotary_base": rope.get("rope_theta", getattr(source, "rope_theta", None)),
        "share_embeddings_and_output_weights": False, "vocab_size": source.vocab_size,
        "seq_length": source.max_position_embeddings,
    }


def _nemotron_fields(source) -> dict[str, Any]:
    rope = getattr(source, "rope_parameters", None) or {}
    return {
        "num_layers": source.num_hidden_layers, "hidden_size": source.hidden_size,
        "ffn_hidden_size": source.intermediate_size, "num_attention_heads": source.num_attention_heads,
        "init_method_std": source.initializer_range, "seq_length": source.max_position_embeddings,
        "layernorm_epsilon": source.norm_eps, "num_query_groups": source.num_key_value_heads,
        "rotary_base": rope.get("rope_theta", getattr(source, "rope_theta", None)),
        "rotary_percent": rope.get("partial_rotary_factor", getattr(source, "partial_rotary_factor", None)),
        "make_vocab_size_divisible_by": _divisible_by(source.vocab_size),
        "share_embeddings_and_output_weights": False, "kv_channels": getattr(source, "head_dim", None),
    }


def _starcoder2_fields(source) -> dict[str, Any]:
    rope = getattr(source, "rope_parameters", None) or {}
    return {
        "num_layers": source.num_hidden_layers, "hidden_size": source.hidden_size,
        "ffn_hidden_size": source.intermediate_size, "num_attention_heads": source.num_attention_heads,
        "init_method_std": source.initializer_range, "seq_length": source.max_position_embeddings,
        "layernorm_epsilon": source.norm_epsilon, "num_query_groups": source.num_key_value_heads,
        "rotary_base": rope.get("rope_theta", getattr(source, "rope_theta", None)),
        "make_vocab_size_divisible_by": _divisible_by(source.vocab_size),
        "share_embeddings_and_output_weights": False,
    }


M = "nemo.collections.llm.gpt.model."
SILU, GELU = fiddle_function("torch.nn.functional.silu"), fiddle_function("torch._C._nn.gelu")
LLAMA_DEFAULTS = {"normalization": "RMSNorm", "activation_func": SILU, "gated_linear_unit": True,
                  "position_embedding_type": "rope", "add_bias_linear": False, "seq_length": 4096,
                  "attention_dropout": 0.0, "hidden_dropout": 0.0, "share_embeddings_and_output_weights": False,
                  "bias_activation_fusion": True, "masked_softmax_fusion": True, "persist_layer_norm": True,
                  "bias_dropout_fusion": True, "apply_rope_fusion": True}
FAMILIES = {
    "llama31": Family("llama31", M + "llama.LlamaModel", M + "llama.Llama31Config",
                      {**LLAMA_DEFAULTS, "scale_factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "old_context_len": 8192}, _llama_fields),
    "llama32": Family("llama32", M + "llama.LlamaModel", M + "llama.Llama32Config1B",
                      {**LLAMA_DEFAULTS, "scale_factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "old_context_len": 8192, "share_embeddings_and_output_weights": True}, _llama_fields),
    "mistral": Family("mistral", M + "mistral.MistralModel", M + "mistral.MistralConfig7B",
                      {"normalization": "RMSNorm", "activation_func": SILU, "position_embedding_type": "rope",
                       "add_bias_linear": False, "gated_linear_unit": True, "seq_length": 32768,
                       "rotary_base": 1000000.0, "window_size": [4096, 0]}, _mistral_fields),
    "qwen2": Family("qwen2", M + "qwen2.Qwen2Model", M + "qwen2.Qwen2Config",
                    {"normalization": "RMSNorm", "activation_func": SILU, "gated_linear_unit": True,
                     "add_bias_linear": False, "add_qkv_bias": True, "seq_length": 4096, "vocab_size": 151936,
                     "layernorm_epsilon": 1e-6, "rotary_base": 1000000.0, "position_embedding_type": "rope"},
                    _qwen2_fields),
    "nemotron": Family("nemotron", M + "nemotron.NemotronModel", M + "nemotron.NemotronConfig",
                       {"normalization": "LayerNorm", "position_embedding_type": "rope", "add_bias_linear": False,
                        "activation_func": fiddle_function("nemo.collections.llm.fn.activation.squared_relu"),
                        "rotary_percent": 0.5, "bias_dropout_add_fusion": False, "gated_linear_unit": False,
                        "layernorm_zero_centered_gamma": True, "seq_length": 4096, "apply_rope_fusion": False},
                       _nemotron_fields, gated_mlp=False),
    "starcoder2": Family("starcoder2", M + "starcoder2.Starcoder2Model", M + "starcoder2.Starcoder2Config",
                         {"normalization": "LayerNorm", "activation_func": GELU, "add_bias_linear": True,
                          "seq_length": 16384, "position_embedding_type": "rope", "rotary_percent": 1.0,
                          "hidden_dropout": 0.0, "attention_dropout": 0.0, "init_method_std": 0.01,
                          "share_embeddings_and_output_weights": False, "kv_channels": None, "num_query_groups": None,
                          "window_size": None, "gated_linear_unit": False, "attention_softmax_in_fp32": True,
                          "bias_activation_fusion": True, "bias_dropout_fusion": True, "layernorm_epsilon": 1e-5},
                         _starcoder2_fields,
                         gated_mlp=False, mlp_names=("c_fc", "c_proj")),
    "starcoder": Family("starcoder", M + "starcoder.StarcoderModel", M + "starcoder.StarcoderConfig",
                        {"normalization": "LayerNorm", "activation_func": GELU, "add_bias_linear": True,
                         "seq_length": 8192, "position_embedding_type": "learned_absolute", "hidden_dropout": 0.2,
                         "attention_dropout": 0.2, "init_method_std": 0.01, "layernorm_epsilon": 1e-5,
                         "share_embeddings_and_output_weights": False, "kv_channels": None, "num_query_groups": 1,
                         "attention_softmax_in_fp32": True, "bias_activation_fusion": True,
                         "bias_dropout_fusion": True}, _starcoder_fields,
                        mapping={  # NeMo's HFStarcoderImporter.convert_state: multi-query c_attn is already [q; k; v]
                            "transformer.wte.weight": "embedding.word_embeddings.weight",
                            "transformer.wpe.weight": "embedding.position_embeddings.weight",
                            "transformer.h.*.attn.c_attn.weight": "decoder.layers.*.self_attention.linear_qkv.weight",
                            "transformer.h.*.attn.c_attn.bias": "decoder.layers.*.self_attention.linear_qkv.bias",
                            "transformer.h.*.attn.c_proj.weight": "decoder.layers.*.self_attention.linear_proj.weight",
                            "transformer.h.*.attn.c_proj.bias": "decoder.layers.*.self_attention.linear_proj.bias",
                            "transformer.h.*.mlp.c_fc.weight": "decoder.layers.*.mlp.linear_fc1.weight",
                            "transformer.h.*.mlp.c_fc.bias": "decoder.layers.*.mlp.linear_fc1.bias",
                            "transformer.h.*.mlp.c_proj.weight": "decoder.layers.*.mlp.linear_fc2.weight",
                            "transformer.h.*.mlp.c_proj.bias": "decoder.layers.*.mlp.linear_fc2.bias",
                            "transformer.h.*.ln_1.weight": "decoder.layers.*.self_attention.linear_qkv.layer_norm_weight",
                            "transformer.h.*.ln_1.bias": "decoder.layers.*.self_attention.linear_qkv.layer_norm_bias",
                            "transformer.h.*.ln_2.weight": "decoder.layers.*.mlp.linear_fc1.layer_norm_weight",
                            "transformer.h.*.ln_2.bias": "decoder.layers.*.mlp.linear_fc1.layer_norm_bias",
                            "transformer.ln_f.weight": "decoder.final_layernorm.weight",
                            "transformer.ln_f.bias": "decoder.final_layernorm.bias",
                            "lm_head.weight": "output_layer.weight",
                        }),
}
# NeMo's GPTConfig126M preset (gpt/model/base.py; 5B..175B add the same three flags) over GPTConfig's defaults:
# learned absolute positions, LayerNorm, biases, exact F.gelu written, tied embeddings. NeMo has no Hugging Face
# importer for it; the twin is a multi-head GPTBigCode, whose c_attn is per head [q; k; v], megatron-core's
# linear_qkv layout when num_query_groups == num_attention_heads, so the Starcoder mapping applies unchanged.
FAMILIES["gpt126m"] = Family(
    "gpt126m", M + "base.GPTModel", M + "base.GPTConfig126M",
    {"seq_length": 2048, "num_layers": 12, "hidden_size": 768, "ffn_hidden_size": 3072, "num_attention_heads": 12,
     "bias_activation_fusion": True, "bias_dropout_add_fusion": True, "use_transformer_engine_full_layer_spec": True},
    lambda source: {**_starcoder_fields(source), "num_query_groups": None,
                    "share_embeddings_and_output_weights": bool(source.tie_word_embeddings)},
    mapping=FAMILIES["starcoder"].mapping,
)


def _rename(hf_state: dict[str, torch.Tensor], mapping: dict[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for source, target in mapping.items():
        pattern = re.compile(re.escape(source).replace(r"\*", r"(\d+)") + "$")
        for key, tensor in hf_state.items():
            if match := pattern.match(key):
                out[target.replace("*", match.group(1)) if match.groups() else target] = tensor
    return out


def merge_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, groups: int, head_dim: int) -> torch.Tensor:
    """NeMo's TransformFns.merge_qkv: per query group, its query heads, then its key, then its value."""
    per_group = heads // groups
    rest = q.shape[1:]
    q, k, v = q.view(heads, head_dim, *rest), k.view(groups, head_dim, *rest), v.view(groups, head_dim, *rest)
    parts = []
    for g in range(groups):
        parts += [q[g * per_group:(g + 1) * per_group], k[g:g + 1], v[g:g + 1]]
    return torch.cat(parts).reshape(head_dim * (heads + 2 * groups), *rest)


def convert_state(hf_state: dict[str, torch.Tensor], family: Family, fields: dict[str, Any]) -> dict[str, torch.Tensor]:
    """HF state dict -> NeMo (Transformer Engine) names, per layer `decoder.layers.{i}.…`."""
    if family.mapping is not None:
        return _rename(hf_state, family.mapping)
    heads, groups = fields["num_attention_heads"], fields.get("num_query_groups") or fields["num_attention_heads"]
    head_dim = fields.get("kv_channels") or fields["hidden_size"] // heads
    up, down = family.mlp_names
    out = {"embedding.word_embeddings.weight": hf_state["model.embed_tokens.weight"]}
    for suffix in ("weight", "bias"):
        if f"model.norm.{suffix}" in hf_state:
            out[f"decoder.final_layernorm.{suffix}"] = hf_state[f"model.norm.{suffix}"]
    if not fields.get("share_embeddings_and_output_weights"):
        out["output_layer.weight"] = hf_state["lm_head.weight"]
    layers = sorted({int(m.group(1)) for key in hf_state if (m := re.match(r"model\.layers\.(\d+)\.", key))})
    for i in layers:
        src, dst = f"model.layers.{i}.", f"decoder.layers.{i}."
        for suffix in ("weight", "bias"):
            q = hf_state.get(f"{src}self_attn.q_proj.{suffix}")
            if q is not None:
                out[f"{dst}self_attention.linear_qkv.{suffix}"] = merge_qkv(
                    q, hf_state[f"{src}self_attn.k_proj.{suffix}"], hf_state[f"{src}self_attn.v_proj.{suffix}"],
                    heads, groups, head_dim)
            pairs = {f"self_attn.o_proj.{suffix}": f"self_attention.linear_proj.{suffix}",
                     f"mlp.{down}.{suffix}": f"mlp.linear_fc2.{suffix}",
                     f"input_layernorm.{suffix}": f"self_attention.linear_qkv.layer_norm_{suffix}",
                     f"post_attention_layernorm.{suffix}": f"mlp.linear_fc1.layer_norm_{suffix}"}
            if family.gated_mlp:  # NeMo's merge_fc1: [gate; up]
                if f"{src}mlp.gate_proj.{suffix}" in hf_state:
                    out[f"{dst}mlp.linear_fc1.{suffix}"] = torch.cat(
                        [hf_state[f"{src}mlp.gate_proj.{suffix}"], hf_state[f"{src}mlp.up_proj.{suffix}"]])
            else:
                pairs[f"mlp.{up}.{suffix}"] = f"mlp.linear_fc1.{suffix}"
            for hf_name, nemo_name in pairs.items():
                if src + hf_name in hf_state:
                    out[dst + nemo_name] = hf_state[src + hf_name]
    return out


def save_torch_dist(state: dict[str, torch.Tensor], weights_dir: Path, num_layers: int, prefix: str = "module.") -> None:
    """megatron-core dist_checkpointing, torch_dist: `module.` prefix (NeMo's; Megatron-Bridge writes none),
    per-layer tensors stacked on a layer axis."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensor

    sharded = {}
    for layer in range(num_layers):  # Transformer Engine's per-linear _extra_state (fp8 metadata; empty here)
        for linear in ("self_attention.linear_proj", "self_attention.linear_qkv", "mlp.linear_fc1", "mlp.linear_fc2"):
            key = f"{prefix}decoder.layers.{linear}._extra_state"
            sharded[f"{key}.{layer}"] = ShardedObject(key, io.BytesIO(), (num_layers,), (layer,), replica_id=0)
    for name, tensor in state.items():
        tensor = tensor.detach().to(torch.float32).contiguous().clone()
        match = re.match(r"decoder\.layers\.(\d+)\.(.*)", name)
        if match:
            layer, rest = int(match.group(1)), match.group(2)
            key = f"{prefix}decoder.layers.{rest}"
            sharded[f"{key}.{layer}"] = ShardedTensor.from_rank_offsets(
                key, tensor, (0, layer, num_layers), replica_id=0, prepend_axis_num=1)
        else:
            sharded[name] = ShardedTensor.from_rank_offsets(f"{prefix}{name}", tensor, replica_id=0)
    weights_dir.mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save(sharded, str(weights_dir))


def write_nemo_checkpoint(hf_model, tokenizer, family: Family, folder: Path, *,
                          field_overrides: dict[str, Any] | None = None) -> Path:
    """Write `hf_model` (and its tokenizer) as NeMo's importer for `family` would; returns the checkpoint dir."""
    from pytest_nemo_eval.checkpoint import cpu_compat

    cpu_compat.apply_cpu_shims()
    cpu_compat.ensure_model_parallel()
    fields = {**family.class_defaults, **{k: v for k, v in family.importer_fields(hf_model.config).items()},
              **(field_overrides or {})}
    config = full_config_dump(None, config_target=family.config_target, overrides=fields)
    document = {"_target_": family.model_target, "config": config, "model_context_managers": [],
                "model_transform": None, "optim": None, "tokenizer": dict(TOKENIZER_SECTION)}
    context = folder / "context"
    tokenizer.save_pretrained(str(context / "nemo_tokenizer"))
    (context / "model.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    state = convert_state(hf_model.state_dict(), family, fields)
    if fields.get("share_embeddings_and_output_weights"):  # tied: NeMo stores no output_layer
        state.pop("output_layer.weight", None)
    save_torch_dist(state, folder / "weights", fields["num_layers"])
    return folder


BRIDGE_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "megatron-bridge-written" / "llama31-tiny" / "megatron-bridge"
BRIDGE_PROVIDER = "megatron.bridge.models.gpt_provider.GPTModelProvider"


def write_bridge_checkpoint(hf_model, tokenizer, family: Family, folder: Path, *, iteration: int = 0,
                            field_overrides: dict[str, Any] | None = None) -> Path:
    """Write `hf_model` laid out as Megatron-Bridge writes a run (megatron/bridge/training/checkpointing.py):
    `latest_checkpointed_iteration.txt`, `iter_NNNNNNN/` with run_config.yaml, torch_dist weights without the
    `module.` prefix and without common.pt (megatron-core 0.19 keeps it in the .distcp), tokenizer/.

    The `model:` section starts from the run_config.yaml Megatron-Bridge itself wrote (every GPTModelProvider
    field, megatron-core 0.19's included), with this family's megatron-core fields over it (what its NeMo
    importer sets; NeMo-only fields such as scale_factor are left out, Megatron-Bridge has none)."""
    from pytest_nemo_eval.checkpoint import cpu_compat

    cpu_compat.apply_cpu_shims()
    cpu_compat.ensure_model_parallel()
    fields = {**family.class_defaults, **family.importer_fields(hf_model.config), **(field_overrides or {})}
    sample = yaml.safe_load((BRIDGE_SAMPLE / "iter_0000000" / "run_config.yaml").read_text(encoding="utf-8"))
    family_dump = full_config_dump(None, overrides=fields)
    model = {**sample["model"], **{k: v for k, v in family_dump.items() if k in sample["model"]}}
    model.update(_target_=BRIDGE_PROVIDER, rope_scaling=False, hf_model_id="/path/on/the/writing/machine",
                 transformer_layer_spec=fiddle_function("megatron.bridge.models.gpt_provider.default_layer_spec"))
    iteration_dir = folder / f"iter_{iteration:07d}"
    tokenizer.save_pretrained(str(iteration_dir / "tokenizer"))
    state = convert_state(hf_model.state_dict(), family, fields)
    if fields.get("share_embeddings_and_output_weights"):
        state.pop("output_layer.weight", None)
    save_torch_dist(state, iteration_dir, fields["num_layers"], prefix="")
    (iteration_dir / "common.pt").unlink()
    (iteration_dir / "run_config.yaml").write_text(yaml.safe_dump({**sample, "model": model}, sort_keys=False),
                                                   encoding="utf-8")
    (folder / "latest_checkpointed_iteration.txt").write_text(str(iteration))
    return folder
