"""Write tests/data/megatron-bridge-written/llama31-tiny/megatron-bridge/ with Megatron-Bridge ITSELF.

CI cannot run this (Megatron-Bridge 0.6.2 needs Python >= 3.12, megatron-core 0.19, transformers 5 and
Transformer Engine/CUDA); its output is committed. How it was run (CPU machine, no GPU, no TE):

    /root/.pyenv/versions/3.12.1/bin/python3.12 -m venv /work/helpers/venvs/mbridge
    /work/helpers/venvs/mbridge/bin/pip install torch==2.13.0
    /work/helpers/venvs/mbridge/bin/pip install megatron-bridge==0.6.2 --no-deps
    /work/helpers/venvs/mbridge/bin/pip install megatron-core==0.19.2 --no-deps
    /work/helpers/venvs/mbridge/bin/pip install "transformers>=5.8,<=5.12.1" tokenizers safetensors pyyaml \
        omegaconf hydra-core numpy packaging einops tqdm sentencepiece regex accelerate
    /work/helpers/venvs/mbridge/bin/python tests/data/megatron-bridge-written/write_checkpoint.py

The Hugging Face model is the NeMo-written set's twin (tests/data/nemo-written/llama31-tiny/hf), copied
to llama31-tiny/hf. Megatron-Bridge's own `AutoBridge.import_ckpt` converts and saves it; the in-process
workarounds below only stand in for what a CPU machine lacks, never for the conversion or the save.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
HF_SOURCE = HERE.parent / "nemo-written" / "llama31-tiny" / "hf"
OUT = HERE / "llama31-tiny"


def cpu_workarounds() -> None:
    """What CPU-only megatron-core/Megatron-Bridge need: a CPU 'current device', no-op synchronize, a gloo group,
    and a placeholder `transformer_engine` module for Megatron-Bridge's unconditional imports (its PEFT layers),
    installed only after megatron-core has decided that Transformer Engine is absent."""
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    torch.cuda.synchronize = lambda device=None: None
    # megatron-core's model-parallel RNG tracker snapshots CUDA RNG states (initialisation only; the
    # imported weights overwrite every parameter): the CPU generator's state stands in.
    torch.cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()
    torch.cuda.set_rng_state = lambda state, device="cuda": None
    torch.cuda.manual_seed = lambda seed: None
    from megatron.core.tensor_parallel import random as mcore_random

    mcore_random._set_cuda_rng_state = lambda *args, **kwargs: None
    import importlib
    import pkgutil

    import megatron.core
    import megatron.training

    for package in (megatron.core, megatron.training):  # every HAVE_TE check runs now, with TE absent
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            with contextlib.suppress(Exception):
                importlib.import_module(info.name)

    class _Chain(type):  # te.ops.Sequential and the like, named in annotations and base classes
        def __getattr__(cls, attr):
            return cls

    class _Placeholder(metaclass=_Chain):
        def __init__(self, *args, **kwargs):
            raise RuntimeError("Transformer Engine is not installed")

    def module(name: str) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__getattr__ = lambda attr: _Placeholder  # type: ignore[method-assign]
        mod.__path__ = []  # a package, so submodule imports resolve to placeholders too
        return mod

    for name in ("transformer_engine", "transformer_engine.pytorch", "transformer_engine.pytorch.ops"):
        sys.modules.setdefault(name, module(name))
    from megatron.core.models.common.embeddings import rope_utils

    def _fused_rope_needs_te(*args, **kwargs):
        raise RuntimeError("Transformer Engine's fused RoPE is not installed (conversion never runs a forward)")

    # The providers keep apply_rope_fusion: true (as on a GPU); TransformerConfig checks only that TE's
    # kernel exists, and converting + saving never runs it.
    rope_utils.fused_apply_rotary_pos_emb = _fused_rope_needs_te
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)


def local_layer_spec_for_te_spec() -> None:
    """Megatron-Bridge's default_layer_spec always builds Transformer Engine layers; without TE, build
    megatron-core's local layers instead. Their sharded state dict uses the TE names
    (sharded_state_dict_keys_map: input_layernorm. -> self_attention.linear_qkv.layer_norm_), Megatron-Bridge's
    Llama mapping covers the local names too, and run_config.yaml still says default_layer_spec. The saved
    tensor names, shapes and `_extra_state` entries are those of a GPU run (checked against NeMo's)."""
    from megatron.bridge.models import gpt_provider
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    gpt_provider.transformer_engine_layer_spec = lambda config: get_gpt_layer_local_spec(
        normalization=config.normalization, qk_layernorm=config.qk_layernorm)
    # torch's LayerNorm/RMSNorm refuse the TE/apex kernel flags (torch_norm.py), ColumnParallelLinear refuses
    # gradient_accumulation_fusion without apex's CUDA extension (a training-only flag); build with them off
    # and put them back, so run_config.yaml keeps what Megatron-Bridge set (persist_layer_norm: true for Llama).
    provide = gpt_provider.GPTModelProvider.provide
    kernel_flags = ("persist_layer_norm", "memory_efficient_layer_norm", "gradient_accumulation_fusion")

    def provide_with_torch_norms(self, *args, **kwargs):
        saved = {flag: getattr(self, flag) for flag in kernel_flags}
        for flag in kernel_flags:
            setattr(self, flag, False)
        try:
            return provide(self, *args, **kwargs)
        finally:
            for flag, value in saved.items():
                setattr(self, flag, value)

    gpt_provider.GPTModelProvider.provide = provide_with_torch_norms


def main() -> None:
    cpu_workarounds()
    local_layer_spec_for_te_spec()
    from megatron.bridge import AutoBridge

    shutil.rmtree(OUT, ignore_errors=True)
    shutil.copytree(HF_SOURCE, OUT / "hf")
    AutoBridge.import_ckpt(hf_model_id=str(OUT / "hf"), megatron_path=str(OUT / "megatron-bridge"))
    print("written:", sorted(str(p.relative_to(OUT)) for p in (OUT / "megatron-bridge").rglob("*")))


if __name__ == "__main__":
    main()
