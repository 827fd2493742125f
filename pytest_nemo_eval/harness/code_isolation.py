"""The one ladder that decides which boundary model-written code runs behind, for every harness.

Levels, strongest first:
- `container`:   the harness runs in a container (docker runtime); the container is the boundary;
- `bubblewrap`:  a bwrap sandbox made here: one per sample for the builtin harness
                 (builtin/bubblewrap.py), the whole harness process for an eval-factory harness
                 (harness_sandbox.py);
- `unsandboxed`: the host user's rights — NOT a boundary; only on explicit opt-in, like
                 bigcode's `--allow_code_execution`.
A benchmark that runs no model-written code is `none`.

The plugin (runner/prerequisites.py) and the builtin harness CLI (builtin/isolation.py) both call
`choose_isolation`; only the probe (`sandbox_problem`) differs between the two sandboxes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

from .errors import HarnessError

Isolation = Literal["container", "bubblewrap", "unsandboxed"]
ALLOW_UNSANDBOXED_ENV = "NEMO_EVAL_ALLOW_UNSANDBOXED_CODE"
OPT_IN = f"--nemo-allow-unsandboxed-code (ini nemo_allow_unsandboxed_code, env {ALLOW_UNSANDBOXED_ENV}=1)"
BWRAP_INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install -y bubblewrap`; scripts/setup.sh does it as root)"


class NoSandbox(HarnessError):
    """Model-written code would run without a boundary and nobody opted in."""


def unsandboxed_allowed_by_env() -> bool:
    return os.environ.get(ALLOW_UNSANDBOXED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def no_sandbox_reason(problem: str) -> str:
    """One line: why model-written code cannot run here, and the three ways on."""
    return (f"model-written code needs a sandbox and none can be made here: {problem}. "
            f"Fix: {BWRAP_INSTALL_HINT}, run the benchmark in the docker runtime, or opt in to running it "
            f"unsandboxed with {OPT_IN}")


def choose_isolation(
    *, in_container: bool, sandbox_problem: Callable[[], str | None], allow_unsandboxed: bool
) -> Isolation:
    """container > bubblewrap (when `sandbox_problem()` is None) > unsandboxed (only with the opt-in);
    raises `NoSandbox` naming the sandbox's problem otherwise."""
    if in_container:
        return "container"
    problem = sandbox_problem()
    if problem is None:
        return "bubblewrap"
    if allow_unsandboxed:
        return "unsandboxed"
    raise NoSandbox(no_sandbox_reason(problem))
