"""Run model-written code with its tests, behind the boundary its isolation level names.

Every level: a fresh `python -I` per sample in its own session, the program passed on
stdin and written to `sample.py` in a fresh working directory, output captured to a
file (bounded by the file-size limit); a guard that, before the sample runs, caps
address space (`memory_mb`, RLIMIT_AS), CPU seconds, file size (10 MB) and core dumps,
and makes Python socket creation raise; the whole process group killed after
`timeout_s` wall time.

- `bubblewrap`: the process runs inside bwrap (see bubblewrap.py): read-only system,
  private /tmp, no host files, processes, network or environment, no capabilities, and
  a process-count limit (`max_processes`, RLIMIT_NPROC, counted per sandbox).
- `container` / `unsandboxed`: the process runs with the harness user's rights in a
  throw-away directory, under `unshare -n` (root) / `unshare -rn` when the kernel
  allows (no network). Not a boundary on its own: `container` relies on the container
  around the harness, `unsandboxed` is an explicit opt-in (see isolation.py).
"""

from __future__ import annotations

import functools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from typing import Literal

from pydantic import BaseModel

from pytest_nemo_eval.processes import kill_process_group, start_process_group

from .bubblewrap import BubblewrapUnavailable, bubblewrap
from .isolation import Isolation, NoSandbox, no_sandbox_reason

FILE_SIZE_MB = 10
SCRATCH_MB = 64  # the sandbox's private /tmp (working directory included)
OUTPUT_TAIL_CHARS = 1000
KILL_WAIT_S = 5.0

_GUARD = r'''
import os, resource, runpy, socket, sys
memory_mb, cpu_s, file_mb, max_processes = (int(v) for v in sys.argv[1:5])
program = sys.stdin.buffer.read()
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
with open("sample.py", "wb") as handle:
    handle.write(program)
resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if max_processes:
    resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))

class _NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        raise PermissionError("network access is disabled in the nemo-eval code sandbox")

import _socket
socket.socket = _NoNetwork
_socket.socket = _NoNetwork
socket.create_connection = lambda *a, **k: _NoNetwork()
sys.argv = ["sample.py"]
runpy.run_path("sample.py", run_name="__main__")
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


def run_sandboxed(
    program: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    max_processes: int = 8,
    isolation: Isolation = "bubblewrap",
) -> SandboxResult:
    """Run `program`; passed when it exits 0 within the limits.

    `max_processes` counts every task of the sample (threads too, and bwrap's own init);
    it applies under bubblewrap only, where the count is the sandbox's own.
    Raises `NoSandbox` when `isolation` is bubblewrap and bwrap cannot make a sandbox here.
    """
    cpu_s = max(1, int(timeout_s) + 1)
    info_read = None
    with tempfile.TemporaryDirectory(prefix="nemo-eval-sandbox-") as workdir, \
            tempfile.TemporaryFile(dir=workdir) as output:
        guard_args = ["-I", "-c", _GUARD, str(memory_mb), str(cpu_s), str(FILE_SIZE_MB)]
        if isolation == "bubblewrap":
            try:
                setup = bubblewrap()
            except BubblewrapUnavailable as exc:
                raise NoSandbox(no_sandbox_reason(str(exc))) from None
            info_read, info_write = os.pipe()
            command = setup.command([*guard_args, str(max_processes)], scratch_mb=SCRATCH_MB, info_fd=info_write)
            extra = {**setup.popen_kwargs(), "pass_fds": (info_write,)}
            env = {}
        else:
            command = [*network_isolation_prefix(), sys.executable, *guard_args, "0"]
            extra = {"cwd": workdir}
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": workdir, "PYTHONHASHSEED": "0",
                   "LANG": "C.UTF-8"}
        try:
            process = start_process_group(
                command, env=env, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT, **extra)
        finally:
            if info_read is not None:
                os.close(info_write)
        try:
            process.communicate(program.encode("utf-8"), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(process, info_read)
            return SandboxResult(status="timeout", detail=f"killed after {timeout_s:g} s")
        except BaseException:
            _kill(process, info_read)
            raise
        finally:
            if info_read is not None:
                os.close(info_read)
        text = _tail(output)
    if process.returncode == 0:
        return SandboxResult(status="passed")
    return SandboxResult(status="failed", detail=text.strip().splitlines()[-1] if text.strip() else
                         f"exit status {process.returncode}")


def _tail(output) -> str:
    output.seek(0, os.SEEK_END)
    output.seek(max(0, output.tell() - OUTPUT_TAIL_CHARS * 4))
    return output.read().decode("utf-8", errors="replace")[-OUTPUT_TAIL_CHARS:]


def _kill(process: subprocess.Popen, info_read: int | None) -> None:
    """SIGKILL the sample's process group. Under bwrap, --die-with-parent then kills the sandbox's init and
    the kernel its whole PID namespace: wait for that init (its pid from bwrap's --info-fd) to be gone,
    so that nothing of the sample is left when this returns."""
    kill_process_group(process, first_signal=signal.SIGKILL, grace_s=KILL_WAIT_S)
    if info_read is None:
        return
    os.set_blocking(info_read, False)
    try:
        info = json.loads(os.read(info_read, 65536) or b"{}")
    except (BlockingIOError, ValueError):
        return  # bwrap died before it started the sandbox
    try:
        pidfd = os.pidfd_open(int(info["child-pid"]))
    except (KeyError, ValueError, OSError):
        return  # already gone
    try:
        select.select([pidfd], [], [], KILL_WAIT_S)  # readable once init exited, i.e. its namespace is empty
    finally:
        os.close(pidfd)
