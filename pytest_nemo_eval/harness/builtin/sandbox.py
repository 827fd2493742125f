"""Run untrusted generated code with its tests: separate process, time and memory limits, no network.

What it does:
- a fresh `python -I` process per sample in its own session, in a throw-away
  working directory, with a minimal environment; killed (whole process group)
  after `timeout_s` wall time;
- inside it, before the sample runs, `resource.setrlimit` caps address space
  (`memory_mb`), CPU seconds, file size (10 MB), and core dumps;
- no network, two layers: when the kernel allows it (root, or unprivileged user
  namespaces) the process runs under `unshare -n` / `unshare -rn`, in a network
  namespace with no interfaces; in any case a guard replaces `socket.socket`
  (and `_socket.socket`) so creating a socket raises.
What it does not: it is not a security boundary against hostile code. Without
`unshare`, code can still reach the network through ctypes or a child
process that is not Python, and it can read files the user can read. Run
untrusted benchmarks in the Docker runtime for stronger isolation.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

_GUARD = r'''
import resource, runpy, socket, sys
memory_bytes = int(sys.argv[1]) * 1024 * 1024
cpu_s = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
resource.setrlimit(resource.RLIMIT_FSIZE, (10 * 1024 * 1024, 10 * 1024 * 1024))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

class _NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        raise PermissionError("network access is disabled in the nemo-eval code sandbox")

import _socket
socket.socket = _NoNetwork
_socket.socket = _NoNetwork
socket.create_connection = lambda *a, **k: _NoNetwork()
sys.argv = [sys.argv[3]]
runpy.run_path(sys.argv[0], run_name="__main__")
'''

Status = Literal["passed", "failed", "timeout"]


class SandboxResult(BaseModel):
    status: Status
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@functools.lru_cache(maxsize=1)
def network_isolation_prefix() -> tuple[str, ...]:
    """`unshare` arguments that give a network namespace here, or () when the kernel refuses."""
    for prefix in (("unshare", "-n"), ("unshare", "-rn")):
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def run_sandboxed(program: str, *, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Run `program`; passed when it exits 0 within the limits."""
    with tempfile.TemporaryDirectory(prefix="nemo-eval-sandbox-") as workdir:
        program_path = Path(workdir) / "sample.py"
        program_path.write_text(program, encoding="utf-8")
        guard_path = Path(workdir) / "_guard.py"
        guard_path.write_text(_GUARD, encoding="utf-8")
        cpu_s = max(1, int(timeout_s) + 1)
        command = [
            *network_isolation_prefix(), sys.executable, "-I", str(guard_path),
            str(memory_mb), str(cpu_s), str(program_path),
        ]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": workdir, "PYTHONHASHSEED": "0",
               "LANG": "C.UTF-8"}
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(process)
            return SandboxResult(status="timeout", detail=f"killed after {timeout_s:g} s")
        except BaseException:
            _kill(process)
            raise
    text = output.decode("utf-8", errors="replace")[-1000:]
    if process.returncode == 0:
        return SandboxResult(status="passed")
    return SandboxResult(status="failed", detail=text.strip().splitlines()[-1] if text.strip() else
                         f"exit status {process.returncode}")


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.communicate()
