"""The bubblewrap (`bwrap`) command that puts one code sample behind a real boundary,
and whether such a boundary can be made on this machine (probed once, cached).

Everything below is done by bwrap (Debian's `bubblewrap`), none by our own syscalls:
- new user, PID, IPC, network, UTS, cgroup and mount namespaces (`--unshare-all`,
  `--unshare-user` so the user namespace is never silently skipped,
  `--disable-userns` so the sample cannot make another one);
- an empty root made read-only; the system (/usr, plus the interpreter's prefix when
  it lives elsewhere) bound in read-only; /bin, /lib... as the host has them (usrmerge
  symlinks); no /etc, /home, /root, /work — nothing of the host's files;
- a fresh /proc of the sandbox's own PID namespace (no host process is visible),
  a minimal read-only /dev with a small /dev/shm;
- a private size-capped tmpfs /tmp holding the working directory;
- `--clearenv` and only PATH, HOME, LANG, PYTHONHASHSEED; `--cap-drop ALL`;
  `--new-session` (no terminal injection); `--die-with-parent`; when the sample's
  process ends, its PID namespace ends and the kernel kills whatever it left running.

Run as root, bwrap is started as an unprivileged uid (NEMO_EVAL_SANDBOX_UID, default
65534 `nobody`): the kernel never applies RLIMIT_NPROC to uid 0, and a process-count
limit is what contains a fork bomb (the count is kept per user namespace, so each
sample has its own). That uid must be able to read the interpreter; when the harness's
own is not readable by it (e.g. pyenv under /root, mode 0700), the same Python
version from /usr is used, or NEMO_EVAL_SANDBOX_PYTHON names one.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..code_isolation import BWRAP_INSTALL_HINT as INSTALL_HINT  # noqa: F401 - one install hint

BWRAP_ENV = "NEMO_EVAL_BWRAP"  # the bwrap executable (name on PATH or a path); default `bwrap`
SANDBOX_UID_ENV = "NEMO_EVAL_SANDBOX_UID"  # uid the sandbox runs as when the harness is root
SANDBOX_PYTHON_ENV = "NEMO_EVAL_SANDBOX_PYTHON"  # interpreter that runs samples inside the sandbox
DEFAULT_SANDBOX_UID = 65534  # `nobody` (the kernel's overflow uid)
WORKDIR = "/tmp/work"
SHM_MB = 8
PROBE_TIMEOUT_S = 30.0
_ROOT_ENTRIES = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


class BubblewrapUnavailable(Exception):
    """No boundary can be made here; the message says why and what to do."""


class Bubblewrap(BaseModel):
    """How samples are put behind bwrap on this machine (resolved once)."""

    model_config = ConfigDict(frozen=True)

    bwrap: str
    python: str
    run_as_uid: int | None = None  # None: as the harness's own user

    def command(self, python_args: list[str], *, scratch_mb: int, info_fd: int | None = None) -> list[str]:
        """bwrap + its options + `python *python_args`, run inside the sandbox; `info_fd` gets bwrap's
        JSON with the sandbox's init pid (`child-pid`)."""
        mounts = system_mounts() + ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        prefix = _prefix_of(self.python)
        if prefix != Path("/usr") and Path("/usr") not in prefix.parents:
            mounts += ["--ro-bind", str(prefix), str(prefix)]
        return [
            self.bwrap,
            "--unshare-all", "--unshare-user", "--disable-userns",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox",
            *mounts,
            "--proc", "/proc",
            "--dev", "/dev", "--size", str(SHM_MB << 20), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
            "--size", str(scratch_mb << 20), "--tmpfs", "/tmp", "--dir", WORKDIR, "--chdir", WORKDIR,
            "--remount-ro", "/",
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", WORKDIR,
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", "0",
            *(["--info-fd", str(info_fd)] if info_fd is not None else []),
            "--", self.python, *python_args,
        ]

    def popen_kwargs(self) -> dict:
        """Start bwrap as the unprivileged sandbox uid when we are root."""
        if self.run_as_uid is None:
            return {}
        return {"user": self.run_as_uid, "group": self.run_as_uid, "extra_groups": [], "cwd": "/"}


def system_mounts() -> list[str]:
    """bwrap options binding the system read-only: /usr, and /bin, /lib... as the host has them
    (usrmerge symlinks, or the real directories where there are some)."""
    mounts = ["--ro-bind", "/usr", "/usr"]
    for name in _ROOT_ENTRIES:
        host = Path("/") / name
        if host.is_symlink():
            mounts += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            mounts += ["--ro-bind", str(host), f"/{name}"]
    return mounts


def bubblewrap() -> Bubblewrap:
    """The working bwrap setup of this machine; raises `BubblewrapUnavailable` saying why not."""
    setup, problem = _probe(
        os.environ.get(BWRAP_ENV) or "bwrap", os.environ.get(SANDBOX_UID_ENV) or "",
        os.environ.get(SANDBOX_PYTHON_ENV) or "",
    )
    if setup is None:
        raise BubblewrapUnavailable(problem)
    return setup


def bubblewrap_problem() -> str | None:
    """None when a sample can be run under bwrap here, else one sentence why not and what to install."""
    try:
        bubblewrap()
    except BubblewrapUnavailable as exc:
        return str(exc)
    return None


@functools.lru_cache(maxsize=8)
def _probe(bwrap_setting: str, uid_setting: str, python_setting: str) -> tuple[Bubblewrap | None, str]:
    """Resolve the settings, then run `python -c pass` in the real sandbox once (keyed by the settings)."""
    bwrap = shutil.which(bwrap_setting)
    if bwrap is None:
        return None, f"bubblewrap is not installed (no `{bwrap_setting}` executable; {BWRAP_ENV} names another)"
    run_as: int | None = None
    if os.geteuid() == 0:
        try:
            run_as = int(uid_setting) if uid_setting else DEFAULT_SANDBOX_UID
        except ValueError:
            return None, f"{SANDBOX_UID_ENV}={uid_setting!r} is not a numeric uid"
        if run_as == 0:
            return None, (f"{SANDBOX_UID_ENV}=0: the sandbox must not run as root (the kernel does not limit "
                          "root's process count, so a fork bomb would not be contained); pick an unused uid")
    python = python_setting or _readable_python(run_as)
    if python is None:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return None, (f"no {version} interpreter readable by the sandbox uid {run_as} (this one, "
                      f"{os.path.realpath(sys.executable)}, sits in a directory that uid cannot enter); "
                      f"install {version} under /usr or name one with {SANDBOX_PYTHON_ENV}")
    setup = Bubblewrap(bwrap=bwrap, python=python, run_as_uid=run_as)
    try:
        probe = subprocess.run(
            setup.command(["-I", "-c", "pass"], scratch_mb=1), capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_S, **setup.popen_kwargs(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"cannot run {bwrap}: {exc}"
    if probe.returncode != 0:
        said = (probe.stderr.strip() or probe.stdout.strip() or f"exit status {probe.returncode}").splitlines()[-1]
        why = ""
        if "Unknown option" in said:
            why = " (bubblewrap 0.8.0 or newer is needed, for --disable-userns and --size)"
        elif "namespace" in said or "Operation not permitted" in said or "Permission denied" in said:
            who = f"uid {run_as}" if run_as is not None else "this user"
            why = (f" ({who} may not create user namespaces or mounts: check sysctl user.max_user_namespaces and "
                   "kernel.unprivileged_userns_clone, AppArmor's userns restriction, or the container's "
                   "seccomp profile and masked /proc)")
        return None, f"bwrap cannot make a sandbox here: {said[:300]}{why}"
    return setup, ""


def _readable_python(run_as: int | None) -> str | None:
    """This interpreter when the sandbox uid can read it, else the same version from a system directory."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(sys.base_prefix) / "bin" / version, Path("/usr/bin") / version, Path("/usr/local/bin") / version]
    for candidate in candidates:
        if not candidate.exists():
            continue
        real = Path(os.path.realpath(candidate))
        if run_as is None or _world_readable(real):
            return str(real)
    return None


def _world_readable(path: Path) -> bool:
    """Any user can reach and run `path`: every parent directory searchable by others, the file r-x."""
    try:
        if path.stat().st_mode & (stat.S_IROTH | stat.S_IXOTH) != (stat.S_IROTH | stat.S_IXOTH):
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)
    except OSError:
        return False


def _prefix_of(python: str) -> Path:
    """The installation an interpreter belongs to (…/bin/pythonX.Y -> …)."""
    return Path(os.path.realpath(python)).parent.parent
