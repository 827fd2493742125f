"""Run a harness image (eval-factory's or our offline one) through the Docker SDK.

The container uses the host network so it reaches the proxy on the host's
127.0.0.1 (Linux; on Docker Desktop for macOS/Windows `--network host` does not
reach the host's loopback — point model_url at `host.docker.internal` instead);
that is also why each run gets its own ADAPTER_PORT (containers share the
host's ports). The output dir, a dataset cache (HF_HOME) and the suite's extra
mounts (read-only) are bind-mounted; the suite's environment variables and the
API key are passed by *name*, their values read from the host environment and
never logged. One `ContainerSpec` feeds both the SDK call and the logged
`$ docker run ...` line, so the line reproduces the run when pasted. The
container is removed on success, failure, timeout and Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shlex
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from . import eval_factory
from .errors import HarnessFailed, HarnessTimeout, RuntimeUnavailable, with_log_tail
from .invocation import CONTAINER_OUTPUT_DIR, HarnessInvocation, RuntimeOutcome, harness_environment, run_eval_args
from .log_sink import LogSink

CONTAINER_CACHE_DIR = "/nemo-eval/cache"
STOP_GRACE_S = 5
CACHE_DIR_ENV = "NEMO_EVAL_DATASET_CACHE"


def dataset_cache_dir() -> Path:
    """Host dir shared by all harness containers for downloaded datasets (HF_HOME)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nemo-eval" / "datasets"
    path = Path(os.environ.get(CACHE_DIR_ENV, default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def docker_client():
    """A connected Docker client, or RuntimeUnavailable saying how to get one."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a declared dependency
        raise RuntimeUnavailable("The `docker` Python package is missing: pip install docker") from exc
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        raise RuntimeUnavailable(
            f"The Docker daemon is not reachable at {where} ({type(exc).__name__}: {exc}). "
            "Start it (e.g. `sudo bash scripts/start_docker.sh`, or your Docker Desktop), "
            "check DOCKER_HOST, or run this benchmark with runtime: local."
        ) from exc
    return client


def ensure_image(client, image: str, log: Callable[[str], None]):
    """The local image `image`, pulled first (with progress lines) when missing."""
    import docker.errors

    try:
        return client.images.get(image)
    except docker.errors.ImageNotFound:
        pass
    log(f"image {image} not present locally; pulling")
    repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    try:
        for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise RuntimeError(event["error"])
            status = " ".join(str(event.get(k, "")) for k in ("id", "status", "progress") if event.get(k))
            if status and "Downloading" not in status:  # per-chunk progress would flood the log
                log(f"pull: {status}")
        return client.images.get(image)
    except Exception as exc:
        hint = (
            "build it with `python fixtures/harness_image/build_image.py`"
            if image.startswith("nemo-eval-harness")
            else "log in to the registry (`docker login nvcr.io`) or pre-load the image with `docker load`"
        )
        raise RuntimeUnavailable(
            f"Image {image!r} is not present locally and cannot be pulled ({type(exc).__name__}: {exc}). "
            f"To fix: {hint}."
        ) from exc


class ContainerSpec(BaseModel):
    """Everything `docker run` gets for one harness run (secret values excluded)."""

    image: str
    command: list[str]
    name: str
    user: str
    labels: dict[str, str]
    volumes: list[tuple[str, str, str]] = Field(description="(host path, container path, 'ro' | 'rw')")
    environment: dict[str, str] = Field(description="values we set; shown in the log")
    secret_names: list[str] = Field(description="passed by name from the host environment; never shown")

    def docker_run_argv(self) -> list[str]:
        """The equivalent `docker run` command line (SDK options spelt as CLI flags)."""
        argv = ["docker", "run", "--rm", "--init", "--network", "host", "--name", self.name, "--user", self.user]
        for key, value in self.labels.items():
            argv += ["--label", f"{key}={value}"]
        for host, container, mode in self.volumes:
            argv += ["-v", f"{host}:{container}:{mode}"]
        for key, value in self.environment.items():
            argv += ["-e", f"{key}={value}"]
        for name in self.secret_names:
            argv += ["-e", name]  # docker takes the value from the caller's environment
        return argv + [self.image] + self.command


def container_command(inv: HarnessInvocation) -> list[str]:
    """Command run inside a harness image (output dir mounted at CONTAINER_OUTPUT_DIR)."""
    cli = "nemo-eval-harness" if inv.is_builtin else eval_factory.EVALUATOR_COMMANDS[0]
    return [cli] + run_eval_args(inv, output_dir=CONTAINER_OUTPUT_DIR)


def container_spec(inv: HarnessInvocation, output_dir: Path, *, adapter_port: int) -> tuple[ContainerSpec, list[str]]:
    """The run's container and the secret values to mask; a missing variable or mount fails here,
    before any Docker work."""
    environment = harness_environment(inv, adapter_port=adapter_port)
    public = {"HF_HOME": CONTAINER_CACHE_DIR, "HOME": "/tmp", **environment.public}
    from .builtin.tasks import TASKS_PATH_ENV

    if os.environ.get(TASKS_PATH_ENV):  # mounted at the same paths (see _user_task_folders)
        public[TASKS_PATH_ENV] = os.pathsep.join(
            str(Path(p).resolve()) for p in os.environ[TASKS_PATH_ENV].split(os.pathsep) if p
        )
    for name in environment.secret_names:  # a suite variable wins over our default (e.g. HF_HOME)
        public.pop(name, None)
    spec = ContainerSpec(
        image=inv.resolved_image(),
        command=container_command(inv),
        name=_container_name(inv),
        user=f"{os.getuid()}:{os.getgid()}",
        labels={"nemo-eval.benchmark": inv.log_prefix or inv.eval_type},
        volumes=_volumes(inv, output_dir),
        environment=public,
        secret_names=environment.secret_names,
    )
    return spec, environment.secret_values


def run_in_docker(
    inv: HarnessInvocation,
    output_dir: Path,
    log_path: Path,
    on_log: Callable[[str], None] | None = None,
    *,
    adapter_port: int,
) -> RuntimeOutcome:
    spec, secrets = container_spec(inv, output_dir, adapter_port=adapter_port)
    client = docker_client()
    command_line = shlex.join(spec.docker_run_argv())
    with LogSink(log_path, prefix=inv.log_prefix, on_log=on_log, secrets=secrets) as sink:
        for note in inv.log_notes:
            sink.line(f"# {note}")
        image = ensure_image(client, spec.image, sink.line)
        sink.line("$ " + command_line)
        try:
            container = client.containers.create(
                image.id,
                command=spec.command,
                name=spec.name,
                network_mode="host",
                init=True,  # tini as PID 1 forwards SIGTERM, so a timeout stop is immediate
                environment={**spec.environment, **{n: os.environ[n] for n in spec.secret_names}},
                volumes={host: {"bind": target, "mode": mode} for host, target, mode in spec.volumes},
                user=spec.user,
                labels=spec.labels,
            )
            container.start()
            status = _wait_streaming(container, sink, inv.timeout_s)
        finally:
            _remove(client, spec.name)  # by name: also covers a Ctrl-C that lands inside create()
    if status != 0:
        raise HarnessFailed(with_log_tail(
            f"Harness {inv.eval_type} exited with status {status} in container image {spec.image}. "
            "Its log shows why; fix the cause (endpoint reachable from the container, task name, "
            "overrides) and re-run.",
            log_path,
        ))
    digests = image.attrs.get("RepoDigests") or []
    return RuntimeOutcome(command=spec.command, command_line=command_line, image=spec.image,
                          image_digest=digests[0] if digests else image.id)


def _container_name(inv: HarnessInvocation) -> str:
    """Unique and recognisable: `docker ps` shows which benchmark a container belongs to."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", inv.log_prefix.strip(" []") or inv.task)[:40]
    return f"nemo-eval-{readable}-{uuid.uuid4().hex[:8]}"


def _volumes(inv: HarnessInvocation, output_dir: Path) -> list[tuple[str, str, str]]:
    volumes = [(str(output_dir), CONTAINER_OUTPUT_DIR, "rw"), (str(dataset_cache_dir()), CONTAINER_CACHE_DIR, "rw")]
    for folder in _user_task_folders(inv):  # the user's own task specs and data, at the same paths inside
        volumes.append((folder, folder, "ro"))
    for mount in inv.mounts:
        host = Path(mount.host).expanduser().resolve()
        if not host.exists():
            raise RuntimeUnavailable(
                f"The suite mounts {mount.host} into the harness container, but that path does not exist on "
                "the host. Create it or fix the `mounts:` entry of the benchmark."
            )
        volumes.append((str(host), mount.container or str(host), "ro"))
    return volumes


def _user_task_folders(inv: HarnessInvocation) -> list[str]:
    """Host folders holding user task specs: the task_spec override's and NEMO_EVAL_TASKS_PATH's."""
    from .builtin.tasks import TASKS_PATH_ENV

    paths = [Path(p) for p in os.environ.get(TASKS_PATH_ENV, "").split(os.pathsep) if p]
    if inv.overrides.get("task_spec"):
        paths.append(Path(inv.overrides["task_spec"]))
    folders = {(p if p.is_dir() else p.parent).resolve() for p in paths}
    return sorted(str(f) for f in folders if f.is_dir())  # a task_spec path inside a suite mount is not on the host


def _wait_streaming(container: Any, sink: LogSink, timeout_s: float | None) -> int:
    """Stream the container's logs to `sink` until it exits; stop it on timeout."""
    streamer = threading.Thread(
        target=lambda: sink.feed_bytes(container.logs(stream=True, follow=True)), daemon=True
    )
    streamer.start()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def wait() -> None:
        try:
            outcome["result"] = container.wait()
        except Exception as exc:  # daemon gone mid-run
            outcome["error"] = exc
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    if not done.wait(timeout=timeout_s):
        container.stop(timeout=STOP_GRACE_S)
        streamer.join(timeout=STOP_GRACE_S)
        raise HarnessTimeout(with_log_tail(
            f"Harness container ran past its timeout of {timeout_s:g} s; it was stopped and removed. "
            "Raise timeout_s for this benchmark, lower limit_samples, or check that the model "
            "endpoint is reachable from the container (--network host).",
            sink.log_path,
        ))
    streamer.join(timeout=STOP_GRACE_S)
    if "error" in outcome:
        raise RuntimeUnavailable(f"Lost the Docker daemon while the harness ran: {outcome['error']}")
    return int(outcome["result"].get("StatusCode", -1))


def _remove(client: Any, name: str) -> None:
    try:
        client.containers.get(name).remove(force=True)
    except Exception:  # never created, or already gone
        pass
