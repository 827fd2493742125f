"""Make megatron-core 0.16 run on a machine without CUDA; a no-op when CUDA is present.

megatron-core assumes a GPU in a few places (measured, see shared/DESIGN.md):
`torch.cuda.current_device()` picks the device of RoPE frequencies and some
buffers, `torch.cuda.synchronize()` runs before a checkpoint save, the attention dropout forks the CUDA RNG tracker, and the model
parallel state wants an initialized process group. On CPU we point the current
device at "cpu", install a no-op RNG tracker, and start a one-process gloo
group. Callers pass an explicit attention mask, which avoids the CUDA causal
mask built when the mask is None.
"""

from __future__ import annotations

import contextlib
import os
import threading

import torch

_lock = threading.Lock()
_applied = False


class _NoopRngTracker:
    """Stands in for megatron's CUDA RNG tracker: forking it does nothing (eval and CPU training)."""

    def add(self, name, seed):  # noqa: D102 - mirrors megatron's tracker API
        pass

    def reset(self):  # noqa: D102
        pass

    def get_states(self):  # noqa: D102
        return {}

    def set_states(self, states):  # noqa: D102
        pass

    def is_initialized(self):  # noqa: D102
        return True

    @contextlib.contextmanager
    def fork(self, name="model-parallel-rng"):  # noqa: D102
        yield


def cuda_available() -> bool:
    return torch.cuda.is_available()


def apply_cpu_shims() -> None:
    """Patch megatron-core's CUDA assumptions, once per process, only when CUDA is absent."""
    global _applied
    if cuda_available():
        return
    with _lock:
        if _applied:
            return
        torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
        torch.cuda.synchronize = lambda device=None: None  # dist_checkpointing.save syncs before writing
        from megatron.core.tensor_parallel import random as mcore_random

        # get_cuda_rng_tracker() returns this module global once it is marked initialized.
        mcore_random._CUDA_RNG_STATE_TRACKER = _NoopRngTracker()
        mcore_random._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
        _applied = True


def ensure_model_parallel(tensor_parallel: int = 1, pipeline_parallel: int = 1) -> None:
    """Initialize torch.distributed (one process unless launched by torchrun) and megatron's parallel state."""
    from megatron.core import parallel_state

    if not torch.distributed.is_initialized():
        backend = "nccl" if cuda_available() else "gloo"
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            # An in-process store: no TCP port to pick, so concurrent processes cannot collide.
            torch.distributed.init_process_group(backend=backend, store=torch.distributed.HashStore(), rank=0, world_size=1)
        else:  # launched by torchrun, which sets MASTER_ADDR/MASTER_PORT/RANK
            torch.distributed.init_process_group(backend=backend)
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=tensor_parallel, pipeline_model_parallel_size=pipeline_parallel
        )
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

    if cuda_available():
        model_parallel_cuda_manual_seed(1234)
