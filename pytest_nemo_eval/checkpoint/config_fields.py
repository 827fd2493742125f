"""What each field of NeMo's full config dump means for serving: applied, neutral, or must keep its default.

NeMo's `io_dump` writes every field of the config dataclass (GPTConfig and its
family subclasses over megatron-core's TransformerConfig, ~265 fields with
nemo-toolkit 2.7 / megatron-core 0.16), defaults included. A field is either
APPLIED by config.py, NEUTRAL for a single-process inference forward (training,
parallelism, fusion, precision-recipe and logging knobs: they change how the
same function is computed, not which function), or REQUIRED to keep a value
this loader implements. A field in none of these lists is accepted only when
its value is "off" (null, false, 0, empty); otherwise it is refused by name, so
a newer NeMo's architecture switch can never be silently ignored.

Every neutral field carries the reason, citing the megatron-core 0.16 code that
reads it (NEUTRAL_REASONS): fusion flags that select another kernel for the same
function are neutral, flags that select another function are applied (a fused
GELU is megatron-core's tanh GELU; see config._computed_activation), and
precision flags are applied where they matter (bf16 on CUDA).
"""

from __future__ import annotations

from typing import Any

# Read by config.py into GPTArchitecture (or checked there).
APPLIED = frozenset({
    "_target_", "num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
    "kv_channels", "seq_length", "max_position_embeddings", "normalization", "layernorm_epsilon",
    "layernorm_zero_centered_gamma", "activation_func", "gated_linear_unit", "position_embedding_type",
    "rotary_base", "rotary_percent", "seq_len_interpolation_factor", "add_bias_linear", "add_qkv_bias",
    "share_embeddings_and_output_weights", "vocab_size", "make_vocab_size_divisible_by", "window_size",
    "scale_factor", "low_freq_factor", "high_freq_factor", "old_context_len", "softmax_scale",
    "tensor_model_parallel_size", "transformer_layer_spec",
    "num_moe_experts", "window_attn_skip_freq",
    *("bias_activation_fusion", "use_te_activation_func", "use_transformer_engine_op_fuser"),  # -> activation
    *("attention_softmax_in_fp32", "apply_query_key_layer_scaling", "disable_bf16_reduced_precision_matmul",
      "fp32_residual_connection"),  # precision: passed to TransformerConfig / decide the serving dtype
    "rope_scaling", "rope_scaling_factor",  # Megatron-Bridge's Llama 3.x RoPE scaling (megatron-core's defaults)
})
# Why the fields that once looked neutral are applied (the audit's other half; docs/architecture.md).
APPLIED_REASONS: dict[str, str] = {
    "bias_activation_fusion": "selects another function: with GELU, MLP.forward calls bias_gelu_impl / "
                              "bias_geglu_impl (fusions/fused_bias_gelu.py, fused_bias_geglu.py), the tanh "
                              "approximation; SwiGLU's fused kernel is the same silu(a)*b. Served as GELU-tanh.",
    "use_te_activation_func": "Transformer Engine's activation module (gpt_layer_specs.py:490, TEActivationOp): "
                              "TE's GELU/GEGLU are the tanh approximation. Served as GELU-tanh.",
    "use_transformer_engine_op_fuser": "TEFusedMLP (extensions/transformer_engine.py _make_activation_op): "
                                       "te.pytorch.ops.GELU/GEGLU, the tanh approximation. Served as GELU-tanh.",
    "attention_softmax_in_fp32": "FusedScaleMaskSoftmax upcasts bf16/fp16 scores to fp32 for the softmax "
                                 "(fused_softmax.py:313); passed to TransformerConfig, so applied under bf16 (CUDA).",
    "apply_query_key_layer_scaling": "DotProductAttention divides the scores by the layer number and the fp32 "
                                     "softmax multiplies it back (dot_product_attention.py:89); forces "
                                     "attention_softmax_in_fp32 (transformer_config.py:1482). Passed through.",
    "disable_bf16_reduced_precision_matmul": "with bf16, turns off cuBLAS reduced-precision bf16 reductions "
                                             "(transformer_config.py:921). Passed through (CUDA only).",
    "fp32_residual_connection": "the residual stream in fp32 (language_model_embedding.py:131): served in fp32, "
                                "and refused under an explicit bf16/fp16 dtype.",
}

# field -> (allowed values, what the message says is supported). num_moe_experts has its own message.
REQUIRED: dict[str, tuple[tuple[Any, ...], str]] = {
    "multi_latent_attention": ((False, None), "standard multi-head / grouped-query attention (no MLA)"),
    "qk_layernorm": ((False, None), "no QK layer norm"),
    "qk_l2_norm": ((False, None), "no QK L2 norm"),
    "mtp_num_layers": ((None, 0), "no multi-token-prediction layers"),
    "rotary_interleaved": ((False, None), "non-interleaved RoPE (rotate-half, as Hugging Face Llama)"),
    "apply_residual_connection_post_layernorm": ((False, None), "pre-norm residuals"),
    "softmax_type": (("vanilla", None), "vanilla softmax"),
    "attention_output_gate": ((False, None), "no attention output gate"),
    "experimental_attention_variant": ((None,), "standard attention"),
    "linear_attention_freq": ((None, 0), "no linear-attention layers"),
    "is_hybrid_model": ((False, None), "transformer-only models (no Mamba layers)"),
    "heterogeneous_block_specs": ((False, None), "identical layers"),
    "hetereogenous_dist_checkpoint": ((False, None), "identical layers"),
    "heterogeneous_layers_config_path": ((None, ""), "identical layers"),
    "mrope_section": ((None,), "1-D RoPE (no multimodal RoPE)"),
    "no_rope_freq": ((None, 0), "RoPE on every layer"),
    "glu_linear_offset": ((0.0, 0, None), "glu_linear_offset 0"),
    "activation_func_clamp_value": ((None,), "unclamped activations"),
    "use_kitchen": ((False, None), "no NVIDIA Kitchen layers"),
    "use_kitchen_attention": ((False, None), "no NVIDIA Kitchen layers"),
    "use_transformer_engine_full_layer_spec": ((False, None), "the default layer spec"),
    # megatron-core 0.19 (Megatron-Bridge): muP multiplies embeddings and logits (language_module.py:335)
    "use_mup": ((False, None), "no muP scaling"),
    "mup_embedding_mult": ((1.0, None), "no muP scaling (mup_embedding_mult 1.0)"),
    "mup_output_mult": ((1.0, None), "no muP scaling (mup_output_mult 1.0)"),
}

# Neutral for an eval forward on one process whatever their value: field -> why, citing the
# megatron-core 0.16 code that reads it (audited for issue 16; docs/architecture.md shows this table).
_TRAINING = ("training only: dropout is identity in eval mode (`nn.Dropout`, `_bias_dropout_add_func` with "
             "training=False), initialisation is overwritten by the loaded weights, and loss/gradient/optimizer "
             "hooks run only in the backward pass or the training schedule (pipeline_parallel/schedules.py)")
_PARALLEL = ("parallelism and communication: how the same matmuls are split over GPUs; serving chooses its own "
             "tensor/pipeline sizes (--nemo-tensor-parallel) and the math is split-invariant")
_KERNEL = "kernel choice: another implementation of the same function"
NEUTRAL_REASONS: dict[str, str] = {
    **dict.fromkeys((
        "attention_dropout", "hidden_dropout", "init_method", "init_method_std", "output_layer_init_method",
        "embedding_init_method", "embedding_init_method_std", "perform_initialization", "use_cpu_initialization",
        "init_model_with_meta_device", "calculate_per_token_loss", "fp16_lm_cross_entropy", "finalize_model_grads_func",
        "grad_scale_func", "grad_sync_func", "param_sync_func", "no_sync_func", "gradient_accumulation_fusion",
        "defer_embedding_wgrad_compute", "delay_wgrad_compute", "wgrad_deferral_limit", "barrier_with_L1_time",
        "timers", "data_step_fn", "forward_step_fn", "distribute_saved_activations",
        "deallocate_pipeline_outputs", "activation_func_fp8_input_store", "_cpu_offloading_context",
        "offload_modules", "min_offloaded_tensor_size", "fine_grained_activation_offloading",
        "num_microbatches_with_partial_activation_checkpoints", "mtp_loss_scaling_factor", "mtp_standalone",
    ), _TRAINING),
    **dict.fromkeys((
        "context_parallel_size", "cp_comm_type", "pipeline_model_parallel_size", "virtual_pipeline_model_parallel_size",
        "expert_model_parallel_size", "expert_tensor_parallel_size", "sequence_parallel",
        "async_tensor_model_parallel_allreduce", "pipeline_dtype", "pipeline_model_parallel_layout",
        "pipeline_model_parallel_comm_backend", "use_ring_exchange_p2p", "hybrid_context_parallel",
        "hierarchical_context_parallel_sizes", "account_for_embedding_in_pipeline_split",
        "account_for_loss_in_pipeline_split", "microbatch_group_size_per_vp_stage", "variable_seq_lengths",
        "max_seqlen_per_dp_cp_rank", "clone_scatter_output_in_embedding", "scatter_embedding_sequence_parallel",
        "parallel_output", "symmetric_ar_type", "inference_fuse_tp_communication", "disable_parameter_transpose_cache",
    ), _PARALLEL),
    "config_logger_dir": "logging: log_config_to_disk writes the config and state dict (gpt_model.py), no math",
    "log_max_attention_logit": "logging: records the largest attention logit (attention.py), the scores are unchanged",
    "test_mode": "debugging: run_realtime_tests() only asserts on q/k/v (attention.py:1483)",
    "qk_clip": "training: MuonClip rescales q/k weights after an optimizer step (attention.py clip_qk); "
               "the stored weights are already the result",
    "qk_clip_alpha": "training: a setting of qk_clip", "qk_clip_threshold": "training: a setting of qk_clip",
    "generation_config": "NeMo's default sampling settings; the request's parameters decide sampling",
    "inference_rng_tracker": "RNG for sampling/dropout, not the logits",
    "inference_sampling_seed": "RNG for sampling, not the logits",
    "deterministic_mode": _KERNEL + " (deterministic algorithms; same values up to rounding order)",
    "batch_invariant_mode": _KERNEL + " (flash-attention num_splits=1, attention.py:738)",
    "use_inference_optimized_layers": _KERNEL + " (not read by megatron-core 0.16's GPT forward)",
    "mlp_chunks_for_prefill": _KERNEL + " (the prefill MLP applied in token chunks: row-wise, the same values)",
    "flash_decode": _KERNEL + " (decode attention through flash-attn, gpt_model.py:339)",
    "attention_backend": _KERNEL + " (flash/fused/unfused attention compute the same softmax(QK^T*scale)V, "
                                   "the TE kernels with an fp32 softmax)",
    "kitchen_attention_backend": _KERNEL + " (only with use_kitchen, which is REQUIRED off)",
    "transformer_impl": _KERNEL + " (Transformer Engine vs local modules of the same layer; the TE activation "
                                  "difference is applied through use_te_activation_func / the op fuser)",
    "use_te_rng_tracker": "RNG for dropout, identity in eval",
    "use_mamba_mem_eff_path": "Mamba only (is_hybrid_model is REQUIRED off)",
    "use_fused_weighted_squared_relu": "MoE only (weighted by per_token_scale, experts.py); dense models have none",
    "apply_rope_fusion": _KERNEL + " (rope_utils.apply_rotary_pos_emb: TE's fused_apply_rotary_pos_emb, the same "
                                   "rotate-half rotation; non-interleaved RoPE is REQUIRED)",
    "fused_single_qkv_rope": _KERNEL + " (attention.py:959: one kernel for the qkv split and RoPE)",
    "bias_dropout_fusion": _KERNEL + " (get_bias_dropout_add: the jit-fused and unfused paths both call "
                                     "_bias_dropout_add_func, fused_bias_dropout.py:81)",
    "bias_dropout_add_fusion": "NeMo's alias of bias_dropout_fusion; " + _KERNEL,
    "masked_softmax_fusion": _KERNEL + " (FusedScaleMaskSoftmax.is_kernel_available: the CUDA scaled-masked-softmax "
                                       "kernel computes in fp32, like the torch path with softmax_in_fp32)",
    "persist_layer_norm": _KERNEL + " (apex/TE persistent LayerNorm kernel, fused_layer_norm.py; torch_norm.py "
                                    "does not offer it)",
    "memory_efficient_layer_norm": _KERNEL + " (saves memory for backward, fused_layer_norm.py)",
    "params_dtype": "precision chosen at serve time: bf16 on CUDA, fp32 on CPU (the stored weights are read and cast)",
    "bf16": "precision chosen at serve time (see params_dtype)", "fp16": "precision chosen at serve time (see params_dtype)",
    "autocast_dtype": "training schedule only: torch.autocast around forward_step when enable_autocast "
                      "(pipeline_parallel/schedules.py:417)",
    "enable_autocast": "training schedule only (pipeline_parallel/schedules.py:417)",
    "first_last_layers_bf16": "only with an fp8/fp4 recipe (fp8_utils.py:516), which serving does not use",
    "quant_recipe": "precision recipe chosen at serve time: TE/kitchen quantized linears (gpt_model.py:265 "
                    "finish_init); the checkpoint stores high-precision weights",
    # Megatron-Bridge's run_config.yaml (GPTModelProvider over megatron-core 0.19's TransformerConfig)
    "hf_model_id": "metadata: where Megatron-Bridge read the Hugging Face model (a path of the writing machine)",
    "activation_offload_fraction": "training: share of activations offloaded for the backward pass",
    **dict.fromkeys(("gtp_weight_remat_size", "expert_gtp_weight_remat_size"), _PARALLEL),
    "inference_cuda_graph_scope": "CUDA graph capture replays the same kernels",
    **dict.fromkeys(("inference_grouped_gemm_backend", "inference_moe_token_dispatcher_type"),
                    "MoE only (num_moe_experts is REQUIRED off)"),
    "mlp_chunks_for_training": _KERNEL + " (the MLP applied in token chunks: row-wise, the same values)",
}
# Neutral by prefix: parallel communication overlap, recomputation, offloading, CUDA graphs,
# fp8/fp4 recipes (weights are stored dequantized), and the settings of features that are off
# (MoE when num_moe_experts is null/0, Mamba/linear attention/DSA when those are off).
NEUTRAL_PREFIX_REASONS: dict[str, str] = {
    **dict.fromkeys(("tp_comm_", "tp_only_", "overlap_", "batch_p2p_", "ep_overlap_"), _PARALLEL),
    "recompute_": "training: activation recomputation in the backward pass (same forward)",
    "cpu_offloading": "training: activations offloaded to host memory for the backward pass",
    **dict.fromkeys(("cuda_graph_", "enable_cuda_graph", "external_cuda_graph"),
                    "CUDA graph capture replays the same kernels"),
    **dict.fromkeys(("fp8", "fp4"), "precision recipe chosen at serve time (served in bf16/fp32; the checkpoint "
                                    "stores high-precision weights)"),
    "cross_entropy_": "loss only (the logits come before it)",
    **dict.fromkeys(("num_layers_in_", "num_layers_at_"), "pipeline split of the same layers / bf16 layers of an "
                                                          "fp8 recipe"),
    **dict.fromkeys(("moe_", "mamba_", "linear_conv_", "linear_key_", "linear_num_", "linear_value_", "dsa_"),
                    "settings of a feature that is off (num_moe_experts, is_hybrid_model, "
                    "linear_attention_freq, experimental_attention_variant are REQUIRED off)"),
    "mup_": "settings of muP, which is off (use_mup, mup_embedding_mult, mup_output_mult are REQUIRED)",
}
NEUTRAL = frozenset(NEUTRAL_REASONS)
NEUTRAL_PREFIXES = tuple(NEUTRAL_PREFIX_REASONS)

# Layer specs that build the standard GPT layer (TE or local modules, same math).
STANDARD_LAYER_SPECS = frozenset({
    "nemo.collections.llm.gpt.model.base.default_layer_spec",
    "nemo.collections.llm.gpt.model.base.transformer_engine_layer_spec",
    "nemo.collections.llm.gpt.model.base.local_layer_spec",
    "megatron.core.models.gpt.gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec",
    "megatron.core.models.gpt.gpt_layer_specs.get_gpt_layer_local_spec",
    "megatron.bridge.models.gpt_provider.default_layer_spec",
    "megatron.bridge.models.gpt_provider.transformer_engine_layer_spec",
    "megatron.bridge.models.gpt_provider.local_layer_spec",
})

# Config classes whose configure_model builds a plain megatron-core GPTModel from the fields
# (Llama 3.1+ adds RoPE scaling from scale_factor & co., which we apply). Other families
# (Gemma's embedding scaling, Baichuan's ALiBi, ...) change the model outside the fields.
SUPPORTED_CONFIG_MODULES = {
    "nemo.collections.llm.gpt.model.base": "GPTConfig",
    "nemo.collections.llm.gpt.model.llama": "Llama 2/3/3.1/3.2 and CodeLlama",
    "nemo.collections.llm.gpt.model.mistral": "Mistral 7B / NeMo 12B / Large",
    "nemo.collections.llm.gpt.model.qwen2": "Qwen2 / Qwen2.5",
    "nemo.collections.llm.gpt.model.nemotron": "Nemotron 3/4",
    "nemo.collections.llm.gpt.model.starcoder2": "Starcoder2",
    "nemo.collections.llm.gpt.model.starcoder": "Starcoder",
}
# Megatron-Bridge writes one provider class for every GPT family (run_config.yaml `model._target_`);
# its provide() builds a plain megatron-core GPTModel from the fields (rope_scaling included).
SUPPORTED_BRIDGE_PROVIDERS = frozenset({"megatron.bridge.models.gpt_provider.GPTModelProvider"})


def is_off(value: Any) -> bool:
    """Null, false, zero or empty: the value of a switched-off feature."""
    return value is None or value is False or value == 0 or value == "" or value == [] or value == {}


def is_neutral(field: str) -> bool:
    return field in NEUTRAL or field.startswith(NEUTRAL_PREFIXES)


def audit_table() -> str:
    """The audit as a markdown table (docs/architecture.md holds this text; a test keeps them equal)."""
    rows = ["| field | verdict | megatron-core 0.16 (why) |", "|---|---|---|"]
    rows += [f"| `{name}` | applied | {why} |" for name, why in APPLIED_REASONS.items()]
    by_reason: dict[str, list[str]] = {}
    for name, why in NEUTRAL_REASONS.items():
        by_reason.setdefault(why, []).append(f"`{name}`")
    for prefix, why in NEUTRAL_PREFIX_REASONS.items():
        by_reason.setdefault(why, []).append(f"`{prefix}*`")
    rows += [f"| {', '.join(names)} | neutral | {why} |" for why, names in by_reason.items()]
    return "\n".join(rows) + "\n"
