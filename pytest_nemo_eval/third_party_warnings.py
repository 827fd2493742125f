"""Silence third-party chatter (megatron-core, torch, PyTriton) where the plugin's own work raises it.

Training the demo, loading a checkpoint and serving it make megatron-core and torch
emit tens of thousands of deprecation and "Apex is not installed" warnings that a
user can do nothing about; pytest would end a clean run with "48016 warnings".
The filters match only warnings attributed to those packages, so warnings from the
user's own code, and from any other library, still show.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

THIRD_PARTY_MODULES = r"(megatron|torch|pytriton|tritonclient|transformer_engine|apex)(\.|$)"
_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, UserWarning)


def _add_filters() -> None:
    for category in _CATEGORIES:
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY_MODULES)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Within the block (the plugin's training/loading work inside a user's pytest process)."""
    with warnings.catch_warnings():
        _add_filters()
        yield


def silence_in_this_process() -> None:
    """For the plugin's own processes (`nemo-eval deploy`, `nemo-eval demo-checkpoint`)."""
    _add_filters()
