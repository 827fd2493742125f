"""The whole harness process behind bubblewrap, for eval-factory harnesses that execute model-written code.

bigcode, simple-evals' HumanEval, LiveCodeBench... run the model's programs inside their own process
(at most with Python-level guards), so with `runtime: local` the boundary must go around the whole
harness. What the sandboxed harness sees (all done by bwrap):
- new user, PID, IPC, network, UTS and cgroup namespaces; no nested user namespaces; all
  capabilities dropped; its own session; it dies with the plugin;
- files: an empty root, read-only; the system (/usr, /bin, /lib...) and a few /etc files (ld.so.cache,
  ssl certificates, hosts, passwd, group, nsswitch.conf, localtime) read-only; the harness's venv and
  its base interpreter read-only; the suite's `mounts` read-only; WRITABLE only its run directory
  (also its working directory and HOME, `<run dir>/home`) and the HF datasets/hub caches (never the
  HF token beside them); a private /tmp and /dev/shm; no host home, no /work, no other run's files;
- processes: its own /proc; no host process is visible or signalable;
- network: only a loopback of its own, where sandbox_relay.py listens on the port of each endpoint
  the harness is given (the model URL and, for a judged benchmark, the judge URL) and forwards to
  that endpoint through a Unix socket of its own bound in from the host (`plan_relays`). Nothing
  else of the host or the internet is reachable (no DNS either);
- environment: only what the harness needs (PATH, HOME, LANG, the run's own variables, the suite's
  `env`/API-key names, HF_*/TRANSFORMERS_*/NLTK_* settings except tokens), not the host's.

Root runs it as root inside its user namespace with no capabilities (the venv under /root stays
readable); a fork bomb is then bounded by the run's timeout, not by RLIMIT_NPROC.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import NamedTuple

from .builtin.bubblewrap import BWRAP_ENV, system_mounts

RELAY_SCRIPT = Path(__file__).with_name("sandbox_relay.py")
INSIDE_RELAY_SCRIPT = "/nemo-eval/sandbox_relay.py"
INSIDE_RELAY_DIR = "/nemo-eval/relay"
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
PRIVILEGED_PORT_SHIFT = 20000  # an endpoint on port 80 is reached at 127.0.0.1:20080 inside the sandbox
TMP_MB = 2048
SHM_MB = 256
PROBE_TIMEOUT_S = 30.0
ETC_FILES = ("ld.so.cache", "ssl", "ca-certificates", "ca-certificates.conf", "hosts", "passwd", "group",
             "nsswitch.conf", "localtime", "mime.types")
PASS_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "NLTK_", "TOKENIZERS_", "NEMO_EVALUATOR_", "LC_")
PASS_NAMES = ("LANG", "TZ")
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD")


class RelayedEndpoint(NamedTuple):
    """One host endpoint the sandbox reaches: inside at 127.0.0.1:`inside_port`, through its own socket."""

    host: str
    port: int
    inside_port: int

    @property
    def socket_name(self) -> str:
        return f"relay-{self.inside_port}.sock"


class SandboxRelay(NamedTuple):
    """The relays of one sandbox: the host directory holding their Unix sockets, the endpoints, and the
    inside python that runs sandbox_relay.py."""

    directory: Path
    endpoints: list[RelayedEndpoint]
    python: str


def plan_relays(urls: list[str]) -> tuple[list[RelayedEndpoint], list[str]]:
    """(the endpoints to relay, each URL as the harness inside must use it), for the URLs the harness is
    given. URLs naming the same host:port share one relay (two routes of one proxy differ by path only).
    Inside, an endpoint keeps its port when that is free and >= 1024 (no capability to bind below), so a
    loopback URL usually stays as it is; any other URL is rewritten to the relay's 127.0.0.1:<port>."""
    endpoints: dict[tuple[str, int], RelayedEndpoint] = {}
    inside_urls = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = ("127.0.0.1" if host in LOOPBACK_NAMES else host, port)
        if key not in endpoints:
            taken = {e.inside_port for e in endpoints.values()}
            inside = port if port >= 1024 else port + PRIVILEGED_PORT_SHIFT
            while inside in taken:  # another host's endpoint on the same port
                inside = inside + 1 if inside < 65535 else 1024
            endpoints[key] = RelayedEndpoint(host, port, inside)
        endpoint = endpoints[key]
        if host in LOOPBACK_NAMES and endpoint.inside_port == port:
            inside_urls.append(url)
        else:
            inside_urls.append(urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{endpoint.inside_port}")))
    return list(endpoints.values()), inside_urls


def bwrap_executable() -> str | None:
    return shutil.which(os.environ.get(BWRAP_ENV) or "bwrap")


def sandbox_command(
    inner: list[str],
    *,
    bwrap: str,
    cwd: Path,
    writable: list[Path],
    readable: list[Path],
    binds: list[tuple[Path, str]] | None = None,
    relay: SandboxRelay | None = None,
) -> list[str]:
    """bwrap + options + `inner`. With `relay`, the sandbox's first process is sandbox_relay.py, listening
    on each endpoint's inside port and forwarding to that endpoint's socket in `relay.directory`."""
    mounts = system_mounts()
    for name in ETC_FILES:
        mounts += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for path in _dedupe(readable):
        mounts += ["--ro-bind", str(path), str(path)]
    for host, target in binds or []:  # the suite's `mounts`, read-only, where the suite says
        mounts += ["--ro-bind", str(host), target]
    for path in _dedupe(writable):
        mounts += ["--bind", str(path), str(path)]
    launcher: list[str] = []
    if relay is not None:
        mounts += ["--ro-bind", str(RELAY_SCRIPT), INSIDE_RELAY_SCRIPT,
                   "--bind", str(relay.directory), INSIDE_RELAY_DIR]
        specs = [f"{e.inside_port}={INSIDE_RELAY_DIR}/{e.socket_name}" for e in relay.endpoints]
        launcher = [relay.python, "-I", INSIDE_RELAY_SCRIPT, *specs, "--"]
    return [
        bwrap,
        "--unshare-all", "--unshare-user", "--disable-userns",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "nemo-eval-sandbox",
        "--proc", "/proc", "--dev", "/dev", "--size", str(SHM_MB << 20), "--tmpfs", "/dev/shm",
        "--size", str(TMP_MB << 20), "--tmpfs", "/tmp",
        *mounts,
        "--remount-ro", "/",
        "--chdir", str(cwd),
        "--", *launcher, *inner,
    ]


def python_prefixes(python: Path) -> list[Path]:
    """What an interpreter needs to run: its venv (bin/..) and the base installation pyvenv.cfg names."""
    venv = Path(os.path.abspath(python)).parent.parent
    prefixes = [venv]
    config = venv / "pyvenv.cfg"
    if config.is_file():
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                prefixes.append(Path(os.path.realpath(value.strip())).parent)
    real = Path(os.path.realpath(python)).parent.parent
    if real not in prefixes:
        prefixes.append(real)
    return [p for p in prefixes if p != Path("/usr") and Path("/usr") not in p.parents]


def sandbox_environment(base: dict[str, str], *, home: Path, passed_names: list[str], path_head: str) -> dict[str, str]:
    """The harness's environment inside: `base` (the run's own variables), the named host variables,
    HF/NLTK settings (not tokens or keys), a HOME of its own; HF caches pointed at the bound dirs."""
    env = {"PATH": os.pathsep.join([path_head, "/usr/local/bin", "/usr/bin", "/bin"]), "HOME": str(home),
           "XDG_CACHE_HOME": str(home / ".cache"), "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    for name, value in os.environ.items():
        secret = any(word in name.upper() for word in SECRET_WORDS)
        if name in PASS_NAMES or (name.startswith(PASS_PREFIXES) and not secret):
            env[name] = value
    env.pop("HF_HOME", None)  # its token file stays outside; the caches are passed one by one
    env.update({name: os.environ[name] for name in passed_names if name in os.environ})
    for name, path in hf_caches().items():
        env[name] = str(path)
    env.update(base)
    return env


def _expanded(path: str | Path) -> Path:
    """`~` and `$VAR` expanded, as huggingface_hub expands every cache path it reads from the environment."""
    return Path(os.path.expandvars(os.path.expanduser(str(path))))


def user_cache_home() -> Path:
    """The user's XDG cache folder ($XDG_CACHE_HOME, else ~/.cache)."""
    return _expanded(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def user_hf_home() -> Path:
    """The user's Hugging Face home as huggingface_hub finds it (constants.HF_HOME): $HF_HOME, else
    huggingface/ in the XDG cache folder, `~` and `$VAR` expanded (an empty variable counts as unset)."""
    return _expanded(os.environ.get("HF_HOME") or user_cache_home() / "huggingface")


def hf_caches() -> dict[str, Path]:
    """The host's Hugging Face datasets and hub caches that exist (bound writable: datasets locks files)."""
    hf_home = user_hf_home()
    caches = {
        "HF_DATASETS_CACHE": _expanded(os.environ.get("HF_DATASETS_CACHE") or hf_home / "datasets"),
        "HF_HUB_CACHE": _expanded(os.environ.get("HF_HUB_CACHE") or hf_home / "hub"),
    }
    return {name: path.resolve() for name, path in caches.items() if path.is_dir()}


def harness_sandbox_problem() -> str | None:
    """None when bwrap can sandbox a whole harness here, else one sentence why not."""
    bwrap = bwrap_executable()
    if bwrap is None:
        return f"bubblewrap is not installed (no `{os.environ.get(BWRAP_ENV) or 'bwrap'}` executable)"
    return _probe(bwrap)


@functools.lru_cache(maxsize=4)
def _probe(bwrap: str) -> str | None:
    command = sandbox_command([sys.executable, "-I", "-c", "pass"],
                              bwrap=bwrap, cwd=Path("/"), writable=[],
                              readable=python_prefixes(Path(sys.executable)))
    try:
        probe = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run {bwrap}: {exc}"
    if probe.returncode != 0:
        said = (probe.stderr.strip() or probe.stdout.strip() or f"exit status {probe.returncode}").splitlines()[-1]
        return (f"bwrap cannot make a sandbox here: {said[:300]} (user namespaces may be disallowed: "
                "sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, AppArmor, or a container's "
                "seccomp profile)")
    return None


def _dedupe(paths: list[Path]) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        if path not in seen:
            seen.append(path)
    return seen
