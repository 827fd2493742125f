"""Each supported family as NeMo's importer writes it, loaded by our loader, against transformers' logits.

A tiny random Hugging Face model is made here with transformers, written in NeMo's layout by
nemo_writer.py (NeMo 2.7 importers' config and convert_state, full config dump, TE names, torch_dist),
then read by `load_checkpoint`; the oracle is transformers' float32 log-softmax of the same model.
Weights are drawn wider than transformers' init (std 0.2, norms perturbed) so that a missed detail
(RoPE scaling, zero-centred gamma, a bias) shows as a large difference, not a rounding error.

These checkpoints are the test writer's reading of NeMo's importers; the ground truth beside them is what
NeMo's importer itself wrote for every family (test_nemo_written_families.py, shared/nemo-written/families).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from pytest_nemo_eval.checkpoint import CheckpointError, load_checkpoint

from .nemo_writer import FAMILIES, write_nemo_checkpoint

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "data" / "nemo-written" / "llama31-tiny" / "hf"
TOLERANCE = 1e-4
SHAPE = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=128, initializer_range=0.2,
             tie_word_embeddings=False, bos_token_id=0, eos_token_id=4)


def _hf_config(name: str, exact_gelu: bool = False, sliding_window: int | None = None):
    import transformers as tf

    if name == "llama31":  # every Llama 3.1 RoPE parameter differs from megatron-core's defaults
        return tf.LlamaConfig(**SHAPE, rms_norm_eps=1e-5, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 4.0, "low_freq_factor": 2.0,
            "high_freq_factor": 8.0, "original_max_position_embeddings": 64})
    if name == "llama32":
        return tf.LlamaConfig(**{**SHAPE, "tie_word_embeddings": True}, rms_norm_eps=1e-5, rope_parameters={
            "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    if name == "mistral":
        return tf.MistralConfig(**SHAPE, sliding_window=32, rms_norm_eps=1e-5)
    if name == "qwen2":
        return tf.Qwen2Config(**{k: v for k, v in SHAPE.items() if k != "head_dim"}, rms_norm_eps=1e-6)
    if name == "nemotron":
        return tf.NemotronConfig(**SHAPE, hidden_act="relu2", norm_eps=1e-5, partial_rotary_factor=0.5)
    # Real Starcoder2 / Starcoder configs use gelu_pytorch_tanh: what megatron-core computes for the GELU + 
    # bias_activation_fusion that NeMo's configs write. `exact_gelu=True` makes the negative control's twin.
    if name in ("starcoder2", "gpt_gelu_tanh"):
        act = "gelu" if exact_gelu else "gelu_pytorch_tanh"
        return tf.Starcoder2Config(**{k: v for k, v in SHAPE.items() if k != "head_dim"}, hidden_act=act,
                                   use_bias=True, norm_epsilon=1e-5,  # Starcoder2 3B's non-integer RoPE base
                                   rope_parameters={"rope_type": "default", "rope_theta": 999999.4420358813},
                                   sliding_window=sliding_window)
    if name in ("starcoder", "gpt126m"):  # GPTBigCode: learned absolute positions; Starcoder multi-query
        return tf.GPTBigCodeConfig(vocab_size=320, n_positions=128, n_embd=64, n_layer=2, n_head=4, n_inner=128,
                                   activation_function="gelu" if exact_gelu else "gelu_pytorch_tanh",
                                   multi_query=name == "starcoder", initializer_range=0.2,
                                   tie_word_embeddings=name == "gpt126m", bos_token_id=0, eos_token_id=4)
    raise KeyError(name)


def _family(name: str):
    return FAMILIES["starcoder2" if name == "gpt_gelu_tanh" else name]


def _overrides(name: str) -> dict:
    if name == "gpt_gelu_tanh":  # a GELU(tanh)+LayerNorm+bias GPT as NeMo writes openai_gelu (no fusion flag)
        return {"activation_func": {"_call_": False, "_target_": "nemo.collections.llm.fn.activation.openai_gelu"},
                "_target_": "nemo.collections.llm.gpt.model.base.GPTConfig", "bias_activation_fusion": False}
    if name == "gpt126m":  # the preset asks for NeMo's full-TE layer (another module tree), which is refused;
        return {"use_transformer_engine_full_layer_spec": False}  # the default layer spec, everything else as written
    return {}


def make_hf_model(name: str, seed: int = 0, **config):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_hf_config(name, **config), dtype=torch.float32).eval()
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "norm" in param_name:
                param.add_(torch.randn_like(param) * 0.1)
            elif param_name.endswith("bias"):
                param.copy_(torch.randn_like(param) * 0.1)
    return model


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)


def _log_softmax_pair(loaded, hf_model, length: int, seed: int = 1):
    ids = torch.randint(0, 320, (1, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.triu(torch.ones(1, 1, length, length, dtype=torch.bool), diagonal=1)
    with torch.no_grad():
        ours = loaded.model(ids, torch.arange(length)[None], mask)[0, :, :320].float()
        theirs = hf_model(ids).logits[0].float()
    return torch.log_softmax(ours, -1), torch.log_softmax(theirs, -1)


FAMILY_NAMES = ["llama31", "llama32", "mistral", "qwen2", "nemotron", "starcoder2", "gpt_gelu_tanh", "starcoder",
                "gpt126m"]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_matches_transformers(name, tokenizer, tmp_path):
    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    hf_model = make_hf_model(name)
    folder = write_nemo_checkpoint(hf_model, tokenizer, _family(name), tmp_path / name, field_overrides=_overrides(name))
    loaded = load_checkpoint(folder, device="cpu")
    length = loaded.config.seq_length  # every position up to the served context
    ours, theirs = _log_softmax_pair(loaded, hf_model, length)
    difference = (ours - theirs).abs().max().item()
    print(f"{name}: max |logprob diff| over {length} positions = {difference:.2e}")
    assert difference < TOLERANCE


def test_family_details_are_read_from_the_dump(tokenizer, tmp_path):
    """What each family's parity depends on, as the loader understood it."""
    expectations = {
        "llama31": lambda a: a.rope_scaling is not None and a.rope_scaling.old_context_len == 64,
        "llama32": lambda a: a.share_embeddings_and_output_weights and a.rope_scaling.factor == 32.0,
        "mistral": lambda a: a.window_size == 32 and a.seq_length == 32,
        "qwen2": lambda a: a.add_qkv_bias and not a.add_bias_linear,
        "nemotron": lambda a: a.layernorm_zero_centered_gamma and a.activation == "squared_relu"
        and a.rotary_percent == 0.5 and a.vocab_size is None,
        # NeMo writes exact gelu + bias_activation_fusion: megatron-core computes bias_gelu_impl (tanh)
        "starcoder2": lambda a: a.activation == "gelu_tanh" and a.add_bias_linear and a.normalization == "LayerNorm"
        and a.attention_softmax_in_fp32,
        "starcoder": lambda a: a.activation == "gelu_tanh" and a.num_query_groups == 1,
    }
    from pytest_nemo_eval.checkpoint.config import read_architecture

    for name, expected in expectations.items():
        folder = write_nemo_checkpoint(make_hf_model(name), tokenizer, _family(name), tmp_path / name)
        assert expected(read_architecture(folder / "context")), name


def test_mistral_past_the_sliding_window_is_refused_not_silently_wrong(tokenizer, tmp_path):
    """Within the window, attention equals full causal attention; past it the engine refuses (HTTP 400)."""
    from pytest_nemo_eval.serving.engine import GenerationEngine, GenerationRequest

    hf_model = make_hf_model("mistral")
    folder = write_nemo_checkpoint(hf_model, tokenizer, FAMILIES["mistral"], tmp_path / "mistral",
                                   field_overrides={"seq_length": 128})  # a config with a longer context
    loaded = load_checkpoint(folder, device="cpu")
    assert loaded.config.seq_length == 32
    engine = GenerationEngine(loaded, slots=1)
    try:
        with pytest.raises(ValueError, match="context of 32"):
            engine.generate([GenerationRequest(prompt_ids=list(range(5, 38)), max_tokens=0)])
    finally:
        engine.close()


def test_mistral_without_a_window_needs_seq_length(tokenizer, tmp_path):
    """NeMo's Mistral importer writes seq_length = sliding_window, null for Mistral v0.2+: one clear error."""
    hf_model = make_hf_model("mistral")
    hf_model.config.sliding_window = None
    folder = write_nemo_checkpoint(hf_model, tokenizer, FAMILIES["mistral"], tmp_path / "mistral")
    with pytest.raises(CheckpointError, match=r"seq_length: null.*max_position_embeddings"):
        load_checkpoint(folder, device="cpu")


def _served_vs_hf(hf_model, folder: Path) -> tuple[float, int]:
    loaded = load_checkpoint(folder, device="cpu")
    length = loaded.config.seq_length
    ours, theirs = _log_softmax_pair(loaded, hf_model, length)
    return (ours - theirs).abs().max().item(), length


@pytest.mark.parametrize("name", ["starcoder2", "starcoder", "gpt126m"])
def test_negative_control_exact_gelu_twin_is_caught(name, tokenizer, tmp_path):
    """The parity test can tell the two GELUs apart: the same weights with an exact-GELU twin are > 1e-4 off."""
    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    tanh_twin, exact_twin = make_hf_model(name), make_hf_model(name, exact_gelu=True)
    folder = write_nemo_checkpoint(tanh_twin, tokenizer, _family(name), tmp_path / name,
                                   field_overrides=_overrides(name))
    difference, length = _served_vs_hf(exact_twin, folder)
    print(f"{name} vs an exact-GELU twin: max |logprob diff| over {length} positions = {difference:.2e}")
    assert difference > TOLERANCE


def test_fused_gelu_without_a_bias_is_refused_as_megatron_core_refuses(tokenizer, tmp_path):
    folder = write_nemo_checkpoint(make_hf_model("starcoder2"), tokenizer, FAMILIES["starcoder2"], tmp_path / "s",
                                   field_overrides={"add_bias_linear": False})
    with pytest.raises(CheckpointError, match=r"bias_activation_fusion: True.*GELU with a bias or gated"):
        load_checkpoint(folder, device="cpu")


def test_gpt_preset_full_te_layer_spec_is_refused_by_name(tokenizer, tmp_path):
    folder = write_nemo_checkpoint(make_hf_model("gpt126m"), tokenizer, FAMILIES["gpt126m"], tmp_path / "g")
    with pytest.raises(CheckpointError, match="use_transformer_engine_full_layer_spec: True"):
        load_checkpoint(folder, device="cpu")


def test_starcoder2_sliding_window_dropped_by_nemo_can_be_set_in_model_yaml(tokenizer, tmp_path):
    """NeMo's Starcoder2 importer does not pass HF's sliding_window: the checkpoint serves full attention, which
    differs from Hugging Face past the window. `window_size: [W, 0]` in model.yaml caps the context at W,
    where both agree."""
    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    hf_model = make_hf_model("starcoder2", sliding_window=32)
    as_written = write_nemo_checkpoint(hf_model, tokenizer, FAMILIES["starcoder2"], tmp_path / "written")
    difference, length = _served_vs_hf(hf_model, as_written)
    print(f"starcoder2 without its window: {length} positions, max |logprob diff| = {difference:.2e}")
    assert length == 128 and difference > TOLERANCE
    windowed = write_nemo_checkpoint(hf_model, tokenizer, FAMILIES["starcoder2"], tmp_path / "windowed",
                                     field_overrides={"window_size": [32, 0]})
    difference, length = _served_vs_hf(hf_model, windowed)
    print(f"starcoder2 with window_size [32, 0]: {length} positions, max |logprob diff| = {difference:.2e}")
    assert length == 32 and difference < TOLERANCE


@pytest.mark.parametrize("name", ["qwen2", "nemotron", "starcoder2"])
def test_family_in_megatron_bridge_layout_matches_transformers(name, tokenizer, tmp_path):
    """Families beyond the Llama in Megatron-Bridge's layout (no common.pt: read with torch.distributed.checkpoint),
    against transformers. The test writer laid these out as Megatron-Bridge lays out a run (write_bridge_checkpoint);
    Megatron-Bridge itself wrote only the Llama in tests/data/megatron-bridge-written."""
    from .nemo_writer import write_bridge_checkpoint

    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    hf_model = make_hf_model(name)
    folder = write_bridge_checkpoint(hf_model, tokenizer, _family(name), tmp_path / name, iteration=20)
    loaded = load_checkpoint(folder, device="cpu")
    assert (loaded.layout.format, loaded.layout.iteration) == ("megatron-bridge", 20)
    ours, theirs = _log_softmax_pair(loaded, hf_model, loaded.config.seq_length)
    difference = (ours - theirs).abs().max().item()
    print(f"{name} (Megatron-Bridge layout): max |logprob diff| over {loaded.config.seq_length} positions = "
          f"{difference:.2e}")
    assert difference < TOLERANCE


# --- megatron-core itself as the oracle of the activation the flags select (issue 29, item 3) -----------------

def _te_gelu(x: torch.Tensor) -> torch.Tensor:
    """Transformer Engine's GELU kernel transcribed (transformer_engine/common/util/math.h `gelu`):
    x * (0.5 + 0.5 * tanh(x * (0.79788456 + 0.03567741 * x^2))), the tanh form. TE itself needs CUDA."""
    return x * (0.5 + 0.5 * torch.tanh(x * (0.79788456 + 0.03567741 * x * x)))


class _TEActivationStandIn(torch.nn.Module):
    """Stands in for megatron-core's TEActivationOp (te.pytorch.ops.GELU for F.gelu), built as it is
    (`build_module(submodules.activation_func, config=...)`)."""

    def __init__(self, config):
        super().__init__()

    def forward(self, x):
        return _te_gelu(x)


def _megatron_mlp_as_written(served_mlp, **flags):
    """megatron-core's own MLP with the config the checkpoint wrote (exact F.gelu plus `flags`), on the served
    layer's weights."""
    import dataclasses

    import torch.nn.functional as F
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer.mlp import MLPSubmodules
    from megatron.core.transformer.spec_utils import ModuleSpec, build_module

    config = dataclasses.replace(served_mlp.config, activation_func=F.gelu, **flags)  # megatron-core validates it
    spec = get_gpt_layer_local_spec(normalization="LayerNorm").submodules.mlp
    if flags.get("use_te_activation_func"):
        spec = ModuleSpec(module=spec.module, submodules=MLPSubmodules(
            linear_fc1=spec.submodules.linear_fc1, linear_fc2=spec.submodules.linear_fc2,
            activation_func=_TEActivationStandIn))
    oracle = build_module(spec, config=config).eval()
    oracle.load_state_dict(served_mlp.state_dict())
    return oracle


def _mlp_outputs(served_mlp, oracle) -> tuple[torch.Tensor, torch.Tensor]:
    hidden = torch.randn(16, 2, served_mlp.config.hidden_size, generator=torch.Generator().manual_seed(5)) * 3
    with torch.no_grad():
        ours, our_bias = served_mlp(hidden)
        theirs, their_bias = oracle(hidden)
    return ours + our_bias, theirs + their_bias


def test_served_gelu_equals_megatron_cores_fused_bias_gelu(tokenizer, tmp_path, monkeypatch):
    """What NeMo writes for Starcoder2 (exact F.gelu, bias_activation_fusion: true, a bias) run by megatron-core's
    own MLP on the CPU (it calls bias_gelu_impl) equals the served layer on the same weights; megatron-core's
    MLP without the fusion flag (exact GELU) does not, so the comparison can tell them apart."""
    import megatron.core.transformer.mlp as megatron_mlp

    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    folder = write_nemo_checkpoint(make_hf_model("starcoder2"), tokenizer, FAMILIES["starcoder2"], tmp_path / "s")
    served_mlp = load_checkpoint(folder, device="cpu").model.decoder.layers[0].mlp
    calls = []
    fused = megatron_mlp.bias_gelu_impl
    monkeypatch.setattr(megatron_mlp, "bias_gelu_impl", lambda *a: calls.append(1) or fused(*a))
    ours, theirs = _mlp_outputs(served_mlp, _megatron_mlp_as_written(served_mlp, bias_activation_fusion=True))
    assert calls, "megatron-core's MLP did not take the bias_gelu_impl branch"
    difference = (ours - theirs).abs().max().item()
    print(f"served MLP vs megatron-core's fused bias GELU: max |diff| = {difference:.2e}")
    assert difference < 1e-5
    ours, exact = _mlp_outputs(served_mlp, _megatron_mlp_as_written(served_mlp, bias_activation_fusion=False))
    assert (ours - exact).abs().max().item() > 1e-3  # the negative control: the two GELUs differ visibly here


def test_transformer_engine_activation_branches_as_megatron_core_takes_them(tokenizer, tmp_path):
    """`use_te_activation_func: true` with F.gelu: megatron-core's MLP adds the bias and calls TE's activation
    module (TEActivationOp -> te.pytorch.ops.GELU, the tanh kernel; a transcription stands in for it, TE needs
    CUDA), which equals the served layer. `use_transformer_engine_op_fuser: true` builds TEFusedMLP, whose
    _make_activation_op maps (F.gelu, not gated) to the same te.pytorch.ops.GELU: served the same."""
    from pytest_nemo_eval.checkpoint.config import read_architecture

    warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
    hf_model = make_hf_model("starcoder2")
    exact = {"activation_func": {"_call_": False, "_target_": "torch._C._nn.gelu"}, "bias_activation_fusion": False}
    te_func = write_nemo_checkpoint(hf_model, tokenizer, FAMILIES["starcoder2"], tmp_path / "te",
                                    field_overrides={**exact, "use_te_activation_func": True})
    served_mlp = load_checkpoint(te_func, device="cpu").model.decoder.layers[0].mlp
    ours, theirs = _mlp_outputs(served_mlp, _megatron_mlp_as_written(served_mlp, use_te_activation_func=True))
    difference = (ours - theirs).abs().max().item()
    print(f"served MLP vs megatron-core's MLP with a TE GELU: max |diff| = {difference:.2e}")
    assert difference < 1e-5
    # The op fuser's mapping, read from megatron-core's source (the class exists only with TE installed)
    import megatron.core.extensions.transformer_engine as te_extension

    source = Path(te_extension.__file__).read_text()
    assert "if (activation_func, gated_linear_unit) == (F.gelu, False):\n                op_type = te.pytorch.ops.GELU" \
        in source
    assert "if config.activation_func == F.gelu:\n                    layer_type = te.pytorch.ops.GELU" in source
    for fields in ({**exact, "use_transformer_engine_op_fuser": True},
                   {**exact, "use_te_activation_func": True}):
        context = write_nemo_checkpoint(hf_model, tokenizer, FAMILIES["starcoder2"], tmp_path / str(len(fields)),
                                        field_overrides=fields) / "context"
        assert read_architecture(context).activation == "gelu_tanh", fields
    plain = write_nemo_checkpoint(hf_model, tokenizer, FAMILIES["starcoder2"], tmp_path / "plain",
                                  field_overrides=exact) / "context"
    assert read_architecture(plain).activation == "gelu"  # no flag: exact GELU, as megatron-core's MLP computes


@pytest.mark.parametrize("flags", [
    {"bias_activation_fusion": True, "use_te_activation_func": True},
    {"bias_activation_fusion": True, "add_bias_linear": False},
    {"use_te_activation_func": True, "activation": "squared_relu"},
    {"bias_activation_fusion": True, "activation": "squared_relu"},
    {"bias_activation_fusion": True}, {"use_te_activation_func": True}, {},
], ids=lambda flags: "+".join(f"{k}={v}" for k, v in flags.items()) or "none")
def test_flag_pairings_are_refused_exactly_where_megatron_core_refuses_them(flags):
    """The written flags are refused iff megatron-core's TransformerConfig refuses the same config (its
    __post_init__), with a message naming the flag."""
    import torch.nn.functional as F
    from megatron.core.activations import squared_relu
    from megatron.core.transformer.transformer_config import TransformerConfig

    from pytest_nemo_eval.checkpoint.config import architecture_from_fields

    flags = dict(flags)
    activation = flags.pop("activation", "gelu")
    try:
        TransformerConfig(num_layers=1, hidden_size=64, num_attention_heads=4, ffn_hidden_size=128,
                          activation_func={"gelu": F.gelu, "squared_relu": squared_relu}[activation],
                          **{"add_bias_linear": True, **flags})
        megatron_refuses = False
    except ValueError:
        megatron_refuses = True
    from pytest_nemo_eval.checkpoint.nemo_config import full_config_dump

    targets = {"gelu": "torch._C._nn.gelu", "squared_relu": "megatron.core.activations.squared_relu"}
    family = FAMILIES["starcoder2"]
    written = {**family.class_defaults, **family.importer_fields(_hf_config("starcoder2")),
               "bias_activation_fusion": False, "use_te_activation_func": False, "add_bias_linear": True,
               "activation_func": {"_call_": False, "_target_": targets[activation]}, **flags}
    raw = full_config_dump(None, config_target=family.config_target, overrides=written)  # as nemo_writer writes it
    if megatron_refuses:
        with pytest.raises(CheckpointError, match=next(iter(flags))):
            architecture_from_fields(raw, Path("model.yaml"))
    else:
        architecture_from_fields(raw, Path("model.yaml"))
