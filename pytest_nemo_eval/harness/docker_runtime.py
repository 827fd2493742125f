"""Run a harness image (eval-factory's or our offline one) through the Docker SDK.

The container uses the host network so it reaches the proxy on the host's
127.0.0.1 (Linux; on Docker Desktop for macOS/Windows `--network host` does not
reach the host's loopback — point model_url at `host.docker.internal` instead).
The output dir and a dataset cache (HF_HOME) are bind-mounted; the API key is
passed by environment variable *name*, its value read from the host environment
and never logged. The container is removed on success, failure, timeout and
Ctrl-C.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import HarnessFailed, HarnessTimeout, RuntimeUnavailable, with_log_tail
from .log_sink import LogSink
from .runtime import CONTAINER_OUTPUT_DIR, HarnessInvocation, RuntimeOutcome, container_command

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


def run_in_docker(
    inv: HarnessInvocation,
    output_dir: Path,
    log_path: Path,
    on_log: Callable[[str], None] | None = None,
) -> RuntimeOutcome:
    environment, secrets = _container_environment(inv)  # a missing API key fails before any Docker work
    client = docker_client()
    image_name = inv.resolved_image()
    command = container_command(inv)
    with LogSink(log_path, prefix=inv.log_prefix, on_log=on_log, secrets=secrets) as sink:
        image = ensure_image(client, image_name, sink.line)
        sink.line(f"$ docker run --network host {image_name} " + " ".join(command))
        name = _container_name(inv)
        try:
            container = client.containers.create(
                image.id,
                command=command,
                name=name,
                network_mode="host",
                init=True,  # tini as PID 1 forwards SIGTERM, so a timeout stop is immediate
                environment=environment,
                volumes=_volumes(inv, output_dir),
                user=f"{os.getuid()}:{os.getgid()}",
                labels={"nemo-eval.benchmark": inv.log_prefix or inv.eval_type},
            )
            container.start()
            status = _wait_streaming(container, sink, inv.timeout_s)
        finally:
            _remove(client, name)  # by name: also covers a Ctrl-C that lands inside create()
    if status != 0:
        raise HarnessFailed(with_log_tail(
            f"Harness {inv.eval_type} exited with status {status} in container image {image_name}. "
            "Its log shows why; fix the cause (endpoint reachable from the container, task name, "
            "overrides) and re-run.",
            log_path,
        ))
    digests = image.attrs.get("RepoDigests") or []
    return RuntimeOutcome(
        command=command, image=image_name, image_digest=digests[0] if digests else image.id
    )


def _container_name(inv: HarnessInvocation) -> str:
    """Unique and recognisable: `docker ps` shows which benchmark a container belongs to."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", inv.log_prefix.strip(" []") or inv.task)[:40]
    return f"nemo-eval-{readable}-{uuid.uuid4().hex[:8]}"


def _container_environment(inv: HarnessInvocation) -> tuple[dict[str, str], list[str]]:
    environment = {"HF_HOME": CONTAINER_CACHE_DIR, "HOME": "/tmp", "PYTHONUNBUFFERED": "1"}
    from .builtin.tasks import TASKS_PATH_ENV

    if os.environ.get(TASKS_PATH_ENV):  # mounted at the same paths (see _user_task_folders)
        environment[TASKS_PATH_ENV] = os.pathsep.join(
            str(Path(p).resolve()) for p in os.environ[TASKS_PATH_ENV].split(os.pathsep) if p
        )
    secrets: list[str] = []
    if inv.api_key_env:
        value = os.environ.get(inv.api_key_env)
        if value is None:
            raise RuntimeUnavailable(
                f"api_key_env names {inv.api_key_env!r}, but that environment variable is not set "
                "on the host; export it before running."
            )
        environment[inv.api_key_env] = value
        secrets.append(value)
    return environment, secrets


def _volumes(inv: HarnessInvocation, output_dir: Path) -> dict[str, dict[str, str]]:
    volumes = {
        str(output_dir): {"bind": CONTAINER_OUTPUT_DIR, "mode": "rw"},
        str(dataset_cache_dir()): {"bind": CONTAINER_CACHE_DIR, "mode": "rw"},
    }
    for folder in _user_task_folders(inv):  # the user's own task specs and data, at the same paths inside
        volumes[folder] = {"bind": folder, "mode": "ro"}
    return volumes


def _user_task_folders(inv: HarnessInvocation) -> list[str]:
    """Host folders holding user task specs: the task_spec override's and NEMO_EVAL_TASKS_PATH's."""
    from .builtin.tasks import TASKS_PATH_ENV

    paths = [Path(p) for p in os.environ.get(TASKS_PATH_ENV, "").split(os.pathsep) if p]
    if inv.overrides.get("task_spec"):
        paths.append(Path(inv.overrides["task_spec"]))
    return sorted({str((p if p.is_dir() else p.parent).resolve()) for p in paths})


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
