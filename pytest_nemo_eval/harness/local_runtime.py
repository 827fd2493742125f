"""Run a harness as a local subprocess (our builtin harness, or a pip-installed eval-factory one).

The process gets its own process group (session) so that a timeout or Ctrl-C
kills the harness *and* anything it started (worker processes, sandboxes).
An eval-factory harness runs as `nemo-evaluator` from PATH with that
command's own directory first on the child's PATH: its framework command
(e.g. `lm-eval`) must come from the same environment, not from whatever
other `lm-eval` the caller's PATH finds first.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from pytest_nemo_eval.processes import kill_process_group, start_process_group

from . import eval_factory, harness_sandbox
from .errors import HarnessFailed, HarnessTimeout, RuntimeUnavailable, with_log_tail
from .framework_definitions import evaluator_cli
from .invocation import (
    HarnessEnvironment,
    HarnessInvocation,
    RuntimeOutcome,
    harness_environment,
    run_eval_args,
)
from .judge import JUDGE_URL_PARAM
from .log_sink import LogSink
from .sandbox_relay import HostRelay

KILL_GRACE_S = 5.0


def local_command(inv: HarnessInvocation, output_dir: Path) -> list[str]:
    """Command line for a local process: our harness via this Python, eval-factory via `nemo-evaluator`."""
    if inv.is_builtin:
        launcher = [sys.executable, "-m", "pytest_nemo_eval.harness.builtin.cli"]
    else:
        cli = evaluator_cli()
        if cli is None:
            raise RuntimeUnavailable(
                f"Harness {inv.harness!r} with runtime 'local' needs NeMo Evaluator's `nemo-evaluator` "
                f"command, which is not on PATH. Install {eval_factory.install_hint(inv.harness)} into a "
                "virtual environment and put that environment's bin/ first on PATH (a separate venv when "
                "this one has another lm-eval), or use runtime 'docker' with its eval-factory image."
            )
        launcher = [str(cli)]
    return launcher + run_eval_args(inv, output_dir=str(output_dir))


def run_locally(
    inv: HarnessInvocation,
    output_dir: Path,
    log_path: Path,
    on_log: Callable[[str], None] | None = None,
    *,
    adapter_port: int,
) -> RuntimeOutcome:
    """Run the harness with its run directory as working directory (so two runs never share files a
    harness writes there); an eval-factory harness that runs model code goes under bubblewrap whole."""
    environment = harness_environment(inv, adapter_port=adapter_port)
    public = dict(environment.public)
    sandboxed = not inv.is_builtin and inv.code_isolation == "bubblewrap"
    own_cache = "" if sandboxed else _own_cache_reason(inv)  # the sandbox has a HOME of its own anyway
    with contextlib.ExitStack() as stack:
        if sandboxed:
            command, env, public, relayed = stack.enter_context(_sandboxed(inv, output_dir, environment))
        else:
            command = local_command(inv, output_dir)
            if not inv.is_builtin:  # the framework command (lm-eval, ...) from nemo-evaluator's own environment
                public["PATH"] = os.pathsep.join([str(Path(command[0]).parent), os.environ.get("PATH", "")])
            if own_cache:
                public.update(_own_cache_environment(output_dir))
            env = {**os.environ, **public}
        command_line = shell_line(command, public)
        with LogSink(log_path, prefix=inv.log_prefix, on_log=on_log, secrets=environment.secret_values) as sink:
            for note in inv.log_notes:
                sink.line(f"# {note}")
            if sandboxed:
                sink.line("# model-written code: the whole harness runs under bubblewrap (read-only system, "
                          "writable run dir and HF caches, no host home, own PID/network namespaces; network: "
                          f"only {relayed}, relayed)")
            elif own_cache:
                sink.line(f"# a cache of its own in the run directory ({own_cache}); "
                          "Hugging Face and torch caches stay the user's")
            if not sandboxed and inv.mounts:
                sink.line("# mounts apply to the docker runtime and the bubblewrap sandbox only; "
                          "a plain local process reads the host paths directly")
            sink.line("$ " + command_line)
            return_code = run_process_group(command, env=env, sink=sink, timeout_s=inv.timeout_s, cwd=output_dir)
    if return_code != 0:
        raise HarnessFailed(with_log_tail(
            f"Harness {inv.eval_type} exited with status {return_code} (local runtime). "
            "Its log shows why; fix the cause (endpoint, task name, overrides) and re-run.",
            log_path,
        ))
    return RuntimeOutcome(command=command, command_line=command_line)


def _own_cache_environment(output_dir: Path) -> dict[str, str]:
    """An XDG cache in the run directory, for a harness that races with itself on a shared one (each
    eval-factory container has its own), keeping the user's Hugging Face and torch caches so models and
    datasets are neither downloaded again nor missing offline."""
    return {
        "XDG_CACHE_HOME": str(output_dir / "xdg-cache"),
        "HF_HOME": str(harness_sandbox.user_hf_home()),
        "TORCH_HOME": os.environ.get("TORCH_HOME") or str(harness_sandbox.user_cache_home() / "torch"),
    }


def _own_cache_reason(inv: HarnessInvocation) -> str:
    """Why this harness gets a cache of its own (eval_factory.EvalFactoryHarness.own_cache_home), or ""."""
    known = None if inv.is_builtin else eval_factory.known_harness(inv.harness)
    return known.own_cache_home if known else ""


@contextlib.contextmanager
def _sandboxed(inv: HarnessInvocation, output_dir: Path, environment: HarnessEnvironment):
    """(bwrap command, its environment, the variables to show, what is relayed) for the whole harness under
    bubblewrap, with every endpoint it is given (the model's and the judge's) relayed in while it runs."""
    bwrap = harness_sandbox.bwrap_executable()
    if bwrap is None:
        raise RuntimeUnavailable("bubblewrap is not installed; the plugin decided on it, so it vanished meanwhile")
    judge_url = inv.overrides.get(JUDGE_URL_PARAM)
    urls = [inv.model_url] + ([str(judge_url)] if judge_url else [])
    endpoints, inside_urls = harness_sandbox.plan_relays(urls)
    inside = inv.model_copy(update={"model_url": inside_urls[0]})
    if judge_url:
        inside = inside.model_copy(update={"overrides": {**inv.overrides, JUDGE_URL_PARAM: inside_urls[1]}})
    inner = local_command(inside, output_dir)
    venv_bin = Path(inner[0]).parent
    home = output_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = harness_sandbox.sandbox_environment(environment.public, home=home, passed_names=environment.secret_names,
                                              path_head=str(venv_bin))
    relay_dir = Path(tempfile.mkdtemp(prefix="nemo-eval-relay-"))
    try:
        with contextlib.ExitStack() as relays:
            for endpoint in endpoints:
                relays.enter_context(HostRelay(str(relay_dir / endpoint.socket_name), endpoint.host, endpoint.port))
            command = harness_sandbox.sandbox_command(
                inner, bwrap=bwrap, cwd=output_dir,
                writable=[output_dir, *harness_sandbox.hf_caches().values()],
                readable=harness_sandbox.python_prefixes(venv_bin / "python"),
                binds=[(m.host.resolve(), m.target) for m in inv.mounts],
                relay=harness_sandbox.SandboxRelay(relay_dir, endpoints, str(venv_bin / "python")),
            )
            shown = {k: v for k, v in env.items() if k not in environment.secret_names}
            relayed = " and ".join(f"{e.host}:{e.port}" + (f" (inside 127.0.0.1:{e.inside_port})"
                                                            if (e.host, e.port) != ("127.0.0.1", e.inside_port) else "")
                                   for e in endpoints)
            yield command, env, shown, relayed
    finally:
        shutil.rmtree(relay_dir, ignore_errors=True)


def shell_line(command: list[str], env: dict[str, str]) -> str:
    """`NAME=value ... cmd args`, quoted for a POSIX shell: pasted, it runs the same command.
    PATH is written as `PATH=<dir>:"$PATH"` so the pasted line keeps the user's own PATH."""
    assignments = []
    for name, value in env.items():
        if name == "PATH":
            head = value.split(os.pathsep, 1)[0]
            assignments.append(f'PATH={shlex.quote(head)}:"$PATH"')
        else:
            assignments.append(f"{name}={shlex.quote(value)}")
    return " ".join(assignments + [shlex.join(command)])


def run_process_group(
    command: list[str], *, env: dict[str, str], sink: LogSink, timeout_s: float | None, cwd: Path | None = None
) -> int:
    """Run `command` in a new session, stream its output to `sink`; return its exit status.

    On timeout raises HarnessTimeout; on any exception (incl. KeyboardInterrupt)
    the whole process group is terminated, then killed, before re-raising.
    """
    try:
        process = start_process_group(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
    except OSError as exc:
        raise RuntimeUnavailable(f"Cannot start harness command {command[0]!r}: {exc}") from exc
    try:
        reader = threading.Thread(target=_pump, args=(process, sink), daemon=True)
        reader.start()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_process_group(process, grace_s=KILL_GRACE_S)
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
        kill_process_group(process, grace_s=KILL_GRACE_S)
        raise


def _pump(process: subprocess.Popen, sink: LogSink) -> None:
    assert process.stdout is not None
    for raw in iter(process.stdout.readline, b""):
        sink.line(raw.decode("utf-8", errors="replace"))
    process.stdout.close()
