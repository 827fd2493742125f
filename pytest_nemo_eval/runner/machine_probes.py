"""Probes of this machine (a GPU, a Docker daemon, an image in the local store, a reachable registry), each
cached for the run. The run's state asks them when it picks a runtime, the prerequisites when they decide a
benchmark's skips; neither imports the other for it."""

from __future__ import annotations

import functools
import shutil
import subprocess


@functools.lru_cache(maxsize=1)
def gpu_available() -> bool:
    """An NVIDIA GPU is visible (nvidia-smi lists one); no torch import needed."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


@functools.lru_cache(maxsize=1)
def docker_problem() -> str | None:
    """None when a Docker daemon answers, else why not."""
    try:
        import docker
    except ImportError:
        return "the `docker` Python package is not installed"
    try:
        client = docker.from_env(timeout=5)
        client.ping()
        client.close()
    except Exception as exc:  # docker raises many types for "no daemon"
        return f"no Docker daemon is reachable ({type(exc).__name__})"
    return None


_MISSING = "missing"


def _local_image(image: str) -> str | None:
    """None when `image` is in the local Docker image store (no pull, no registry access),
    _MISSING when it is not, else why it cannot be inspected."""
    import docker

    client = docker.from_env(timeout=10)
    try:
        client.images.get(image)
        return None
    except docker.errors.ImageNotFound:
        return _MISSING
    except Exception as exc:
        return f"cannot inspect image {image} ({type(exc).__name__}: {exc})"
    finally:
        client.close()


@functools.lru_cache(maxsize=64)
def image_present(image: str) -> bool:
    """Whether `image` is in the local Docker image store."""
    try:
        return _local_image(image) is None
    except Exception:  # no daemon
        return False


@functools.lru_cache(maxsize=64)
def image_problem(image: str) -> str | None:
    """None when `image` is present locally (a pull is left to the runtime only
    when the registry answers), else why the benchmark cannot run."""
    state = _local_image(image)
    if state != _MISSING:
        return state
    registry = image.split("/", 1)[0] if "/" in image and "." in image.split("/", 1)[0] else "registry-1.docker.io"
    if not _registry_reachable(registry):
        return f"image {image} is not present locally and its registry {registry} is unreachable (pull it beforehand)"
    return None


@functools.lru_cache(maxsize=16)
def _registry_reachable(host: str) -> bool:
    import requests

    try:
        requests.get(f"https://{host}/v2/", timeout=5)
    except requests.RequestException:
        return False
    return True
