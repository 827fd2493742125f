"""The builtin harness's view of the code-isolation ladder (the ladder itself: ../code_isolation.py).

Override `code_isolation=auto|bubblewrap|container|unsandboxed`: `auto` (the default) is
bubblewrap (one bwrap sandbox per sample, bubblewrap.py) when it works here, else unsandboxed
when NEMO_EVAL_ALLOW_UNSANDBOXED_CODE is set, else an error that says why and what to install.
`container` and `unsandboxed` are taken as given: the plugin decided them with the same ladder.
"""

from __future__ import annotations

from typing import Literal

from ..code_isolation import (  # noqa: F401 - re-exported for the harness CLI and its tests
    ALLOW_UNSANDBOXED_ENV,
    OPT_IN,
    Isolation,
    NoSandbox,
    choose_isolation,
    no_sandbox_reason,
    unsandboxed_allowed_by_env,
)
from .bubblewrap import bubblewrap_problem

IsolationRequest = Literal["auto", "container", "bubblewrap", "unsandboxed"]


def resolve_isolation(requested: IsolationRequest = "auto") -> Isolation:
    """The level samples run under; raises `NoSandbox` when no boundary can be made and no opt-in was given."""
    if requested in ("container", "unsandboxed"):
        return requested  # the caller vouches for the container / opted in explicitly
    return choose_isolation(in_container=False, sandbox_problem=bubblewrap_problem,
                            allow_unsandboxed=requested == "auto" and unsandboxed_allowed_by_env())
