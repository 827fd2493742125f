"""Which boundary model-written code runs behind, and the opt-in needed to run it without one.

Levels, strongest first:
- `container`:   the harness itself runs in a container (docker runtime); the container is
                 the boundary, samples run as plain limited processes inside it;
- `bubblewrap`:  each sample in its own bwrap sandbox (see bubblewrap.py);
- `unsandboxed`: a limited process with the host user's rights (rlimits, a network
                 namespace when the kernel allows, a Python socket guard) — NOT a boundary.
                 Only on explicit opt-in, like bigcode's `--allow_code_execution`.

`auto` (the harness default) is bubblewrap when it works here, else unsandboxed when
NEMO_EVAL_ALLOW_UNSANDBOXED_CODE is set, else an error that says why and what to install.
"""

from __future__ import annotations

import os
from typing import Literal

from ..errors import HarnessError
from .bubblewrap import INSTALL_HINT, bubblewrap_problem

Isolation = Literal["container", "bubblewrap", "unsandboxed"]
IsolationRequest = Literal["auto", "container", "bubblewrap", "unsandboxed"]
ALLOW_UNSANDBOXED_ENV = "NEMO_EVAL_ALLOW_UNSANDBOXED_CODE"
OPT_IN = f"--nemo-allow-unsandboxed-code (ini nemo_allow_unsandboxed_code, env {ALLOW_UNSANDBOXED_ENV}=1)"


class NoSandbox(HarnessError):
    """Model-written code would run without a boundary and nobody opted in."""


def unsandboxed_allowed_by_env() -> bool:
    return os.environ.get(ALLOW_UNSANDBOXED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def no_sandbox_reason(problem: str) -> str:
    """One line: why model-written code cannot run here, and the three ways on."""
    return (f"model-written code needs a sandbox and none can be made here: {problem}. "
            f"Fix: {INSTALL_HINT}, run the benchmark in the docker runtime, or opt in to running it "
            f"unsandboxed with {OPT_IN}")


def resolve_isolation(requested: IsolationRequest = "auto") -> Isolation:
    """The level samples run under; raises `NoSandbox` when no boundary can be made and no opt-in was given."""
    if requested in ("container", "unsandboxed"):
        return requested  # the caller vouches for the container / opted in explicitly
    problem = bubblewrap_problem()
    if problem is None:
        return "bubblewrap"
    if requested == "auto" and unsandboxed_allowed_by_env():
        return "unsandboxed"
    raise NoSandbox(no_sandbox_reason(problem))
