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
})

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
}

# Neutral for an eval forward on one process whatever their value.
NEUTRAL = frozenset({
    # training: dropout, init, loss, grads, optimizer hooks
    "attention_dropout", "hidden_dropout", "init_method", "init_method_std", "output_layer_init_method",
    "embedding_init_method", "embedding_init_method_std", "perform_initialization", "use_cpu_initialization",
    "init_model_with_meta_device", "calculate_per_token_loss", "fp16_lm_cross_entropy", "finalize_model_grads_func",
    "grad_scale_func", "grad_sync_func", "param_sync_func", "no_sync_func", "gradient_accumulation_fusion",
    "defer_embedding_wgrad_compute", "delay_wgrad_compute", "wgrad_deferral_limit", "barrier_with_L1_time",
    "timers", "config_logger_dir", "log_max_attention_logit", "test_mode", "data_step_fn", "forward_step_fn",
    "generation_config", "deterministic_mode", "batch_invariant_mode", "variable_seq_lengths",
    "max_seqlen_per_dp_cp_rank", "deallocate_pipeline_outputs", "distribute_saved_activations",
    "clone_scatter_output_in_embedding", "scatter_embedding_sequence_parallel", "parallel_output",
    "inference_rng_tracker", "inference_sampling_seed", "inference_fuse_tp_communication",
    "use_inference_optimized_layers", "mlp_chunks_for_prefill", "flash_decode", "symmetric_ar_type",
    "disable_parameter_transpose_cache", "hybrid_context_parallel", "hierarchical_context_parallel_sizes",
    "_cpu_offloading_context", "offload_modules", "min_offloaded_tensor_size", "fine_grained_activation_offloading",
    "account_for_embedding_in_pipeline_split", "account_for_loss_in_pipeline_split",
    "microbatch_group_size_per_vp_stage", "num_microbatches_with_partial_activation_checkpoints",
    # parallelism (we choose our own at deploy time)
    "context_parallel_size", "cp_comm_type", "pipeline_model_parallel_size", "virtual_pipeline_model_parallel_size",
    "expert_model_parallel_size", "expert_tensor_parallel_size", "sequence_parallel",
    "async_tensor_model_parallel_allreduce", "pipeline_dtype", "pipeline_model_parallel_layout",
    "pipeline_model_parallel_comm_backend", "use_ring_exchange_p2p",
    # precision and kernels: how the same function is computed (query-key layer scaling divides the scores
    # by the layer number and the softmax multiplies it back: the same function)
    "apply_query_key_layer_scaling",
    "params_dtype", "bf16", "fp16", "autocast_dtype", "enable_autocast", "fp32_residual_connection",
    "attention_softmax_in_fp32", "disable_bf16_reduced_precision_matmul", "first_last_layers_bf16",
    "apply_rope_fusion", "fused_single_qkv_rope", "bias_activation_fusion", "bias_dropout_fusion",
    "bias_dropout_add_fusion", "masked_softmax_fusion", "persist_layer_norm", "memory_efficient_layer_norm",
    "attention_backend", "kitchen_attention_backend", "transformer_impl", "use_te_activation_func",
    "use_te_rng_tracker", "use_transformer_engine_op_fuser", "use_fused_weighted_squared_relu",
    "use_mamba_mem_eff_path", "quant_recipe", "activation_func_fp8_input_store", "qk_clip",
    "qk_clip_alpha", "qk_clip_threshold", "mtp_loss_scaling_factor", "mtp_standalone",
})
# Neutral by prefix: parallel communication overlap, recomputation, offloading, CUDA graphs,
# fp8/fp4 recipes (weights are stored dequantized), and the settings of features that are off
# (MoE when num_moe_experts is null/0, Mamba/linear attention/DSA when those are off).
NEUTRAL_PREFIXES = (
    "tp_comm_", "tp_only_", "overlap_", "batch_p2p_", "recompute_", "cpu_offloading", "cuda_graph_",
    "enable_cuda_graph", "external_cuda_graph", "fp8", "fp4", "cross_entropy_", "num_layers_in_",
    "num_layers_at_", "moe_", "mamba_", "linear_conv_", "linear_key_", "linear_num_", "linear_value_", "dsa_",
    "ep_overlap_",
)

# Layer specs that build the standard GPT layer (TE or local modules, same math).
STANDARD_LAYER_SPECS = frozenset({
    "nemo.collections.llm.gpt.model.base.default_layer_spec",
    "nemo.collections.llm.gpt.model.base.transformer_engine_layer_spec",
    "nemo.collections.llm.gpt.model.base.local_layer_spec",
    "megatron.core.models.gpt.gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec",
    "megatron.core.models.gpt.gpt_layer_specs.get_gpt_layer_local_spec",
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


def is_off(value: Any) -> bool:
    """Null, false, zero or empty: the value of a switched-off feature."""
    return value is None or value is False or value == 0 or value == "" or value == [] or value == {}


def is_neutral(field: str) -> bool:
    return field in NEUTRAL or field.startswith(NEUTRAL_PREFIXES)
