"""Run a harness as a local subprocess (our builtin harness, or a pip-installed eval-factory one).

The process gets its own process group (session) so that a timeout or Ctrl-C
kills the harness *and* anything it started (worker processes, sandboxes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import HarnessFailed, HarnessTimeout, RuntimeUnavailable, with_log_tail
from .log_sink import LogSink
from .runtime import HarnessInvocation, RuntimeOutcome, local_command

KILL_GRACE_S = 5.0


def run_locally(
    inv: HarnessInvocation,
    output_dir: Path,
    log_path: Path,
    on_log: Callable[[str], None] | None = None,
) -> RuntimeOutcome:
    command = local_command(inv, output_dir)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    secrets = [os.environ.get(inv.api_key_env, "")] if inv.api_key_env else []
    with LogSink(log_path, prefix=inv.log_prefix, on_log=on_log, secrets=secrets) as sink:
        sink.line("$ " + " ".join(command))
        return_code = run_process_group(command, env=env, sink=sink, timeout_s=inv.timeout_s)
    if return_code != 0:
        raise HarnessFailed(with_log_tail(
            f"Harness {inv.eval_type} exited with status {return_code} (local runtime). "
            "Its log shows why; fix the cause (endpoint, task name, overrides) and re-run.",
            log_path,
        ))
    return RuntimeOutcome(command=command)


def run_process_group(
    command: list[str], *, env: dict[str, str], sink: LogSink, timeout_s: float | None
) -> int:
    """Run `command` in a new session, stream its output to `sink`; return its exit status.

    On timeout raises HarnessTimeout; on any exception (incl. KeyboardInterrupt)
    the whole process group is terminated, then killed, before re-raising.
    """
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        raise RuntimeUnavailable(f"Cannot start harness command {command[0]!r}: {exc}") from exc
    try:
        reader = threading.Thread(target=_pump, args=(process, sink), daemon=True)
        reader.start()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            reader.join(timeout=KILL_GRACE_S)
            raise HarnessTimeout(with_log_tail(
                f"Harness ran past its timeout of {timeout_s:g} s and was killed with its whole "
                "process group. Raise timeout_s for this benchmark, lower limit_samples, or check "
                "whether the model endpoint answers.",
                sink.log_path,
            )) from None
        reader.join()
        return process.returncode
    except BaseException:
        _kill_group(process)
        raise


def _pump(process: subprocess.Popen, sink: LogSink) -> None:
    assert process.stdout is not None
    for raw in iter(process.stdout.readline, b""):
        sink.line(raw.decode("utf-8", errors="replace"))
    process.stdout.close()


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the process group, wait a grace period, then SIGKILL what is left; return once it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(process.pid):
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + KILL_GRACE_S
        while _group_alive(process.pid) and time.monotonic() < deadline:
            process.poll()  # reap the leader as soon as it exits
            time.sleep(0.05)
    try:
        process.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass


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
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state not in ("Z", "X"):
            return True
    return False
