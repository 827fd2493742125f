"""The config-field audit (issue 16): every megatron-core field is classified, the docs table is current,
and the precision fields reach megatron-core's TransformerConfig."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from pytest_nemo_eval.checkpoint import config_fields
from pytest_nemo_eval.checkpoint.config import GPTArchitecture, build_transformer_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def test_every_transformer_config_field_is_classified():
    from megatron.core.transformer.transformer_config import TransformerConfig

    unclassified = [f.name for f in dataclasses.fields(TransformerConfig)
                    if f.name not in config_fields.APPLIED and f.name not in config_fields.REQUIRED
                    and not config_fields.is_neutral(f.name)]
    # unknown fields are still accepted when off; this lists what a megatron-core upgrade added
    assert unclassified == [], f"classify these fields in config_fields.py: {unclassified}"


def test_docs_audit_table_is_the_generated_one():
    text = DOCS.read_text(encoding="utf-8")
    table = re.search(r"<!-- audit-table:start -->\n(.*?)<!-- audit-table:end -->", text, re.S)
    assert table and table.group(1) == config_fields.audit_table(), (
        "docs/architecture.md's audit table is stale: paste config_fields.audit_table() between the markers")


def test_precision_fields_reach_megatron_core_under_bf16():
    arch = GPTArchitecture(num_layers=1, hidden_size=16, ffn_hidden_size=32, num_attention_heads=2,
                           num_query_groups=2, seq_length=8, attention_softmax_in_fp32=False)
    assert build_transformer_config(arch, torch.bfloat16, True).attention_softmax_in_fp32 is False
    scaled = arch.model_copy(update={"apply_query_key_layer_scaling": True})
    config = build_transformer_config(scaled, torch.bfloat16, True)
    assert config.apply_query_key_layer_scaling and config.attention_softmax_in_fp32  # megatron-core forces it


def test_fp32_residual_connection_serves_in_fp32_and_refuses_bf16():
    import pytest

    from pytest_nemo_eval.checkpoint import CheckpointError
    from pytest_nemo_eval.checkpoint.loader import serving_dtype

    arch = GPTArchitecture(num_layers=1, hidden_size=16, ffn_hidden_size=32, num_attention_heads=2,
                           num_query_groups=2, seq_length=8, fp32_residual_connection=True)
    assert serving_dtype(arch, torch.device("cuda"), None, "model.yaml") == torch.float32
    with pytest.raises(CheckpointError, match="fp32_residual_connection: true.*float32"):
        serving_dtype(arch, torch.device("cuda"), torch.bfloat16, "model.yaml")
