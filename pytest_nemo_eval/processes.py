"""Child process groups, started and ended one way everywhere (deployment, proxy, harness).

A child runs in its own session, so ending it ends everything it spawned
(tritonserver, a Ray head, a harness's workers) at once: `first_signal` (SIGTERM:
clean shutdown) to the group, SIGKILL to whatever is left after `grace_s`, and
SIGKILL to descendants that moved to a session of their own. It returns once
all of them are gone, so their ports are free.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil


def start_process_group(command: list[str], **popen_kwargs) -> subprocess.Popen:
    """subprocess.Popen(command) as the leader of a new session (process group)."""
    return subprocess.Popen(command, start_new_session=True, **popen_kwargs)


def kill_process_group(process: subprocess.Popen, *, grace_s: float = 5.0,
                       first_signal: int = signal.SIGTERM) -> None:
    """End `process`'s group: first_signal, SIGKILL after grace_s, then stragglers; idempotent."""
    descendants = _descendants(process.pid)
    for sig in (first_signal, signal.SIGKILL):
        if not _group_alive(process.pid):
            break
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        deadline = time.monotonic() + grace_s
        while _group_alive(process.pid) and time.monotonic() < deadline:
            process.poll()  # reap the leader as soon as it exits
            time.sleep(0.05)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    for proc in descendants:  # left the group (setsid) but are still ours
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(descendants, timeout=grace_s)


def end_processes(processes: list[psutil.Process], *, grace_s: float, reap_s: float = 5.0) -> None:
    """Processes that are no group of ours (a Ray head's agents, Triton's stubs): wait up to grace_s for
    them to exit, SIGKILL the rest, and return once they are gone (at most reap_s more)."""
    _gone, alive = psutil.wait_procs(processes, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=reap_s)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group `pgid`."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel (zombies count as alive there)
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False
