"""The model endpoint and the interceptor proxy of one pytest run.

`LocalResources` owns them (the serial process, or the xdist controller): it
deploys the checkpoint (or adopts `--nemo-endpoint`) and starts ONE proxy.
An xdist worker gets only the resulting `Target` (URLs, as JSON through
`workerinput`) and talks to the proxy through `ProxyControl`, its HTTP control
routes — which the controller uses too, so a benchmark runs the same way in
either process.

A checkpoint is deployed lazily (runner/lazy_deployment.py): its port, model id and
fingerprint are known before any weight is loaded, and the proxy deploys on the first
request that misses the cache, so a fully cached re-gate never starts the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pytest_nemo_eval.runner.settings import NemoOptions
from pytest_nemo_eval.runner.target_errors import TargetUnavailable  # noqa: F401 - re-exported

DEPLOYMENTS_LOG = "deployments.log"
MAX_HARNESS_PARALLELISM = 256  # the builtin harness's limit


PROXY_LOG_DIR = "proxy-logs"


class Target(BaseModel):
    """What every process needs to evaluate the model: passed to xdist workers as JSON."""

    upstream_url: str
    model_id: str
    proxy_url: str
    output_dir: str
    cache: str
    cache_namespace: str | None = None  # the checkpoint's fingerprint keeps caches of different weights apart
    cache_dir: str | None = None  # the response cache and finished results (runner/result_store.py), kept across runs
    provenance: dict[str, str]
    # a harness's parallelism when its suite sets none: enough requests to keep every replica's batch busy
    default_parallelism: int | None = None


def default_parallelism(options: NemoOptions) -> int | None:
    """N > 1 replicas: N x max_batch_size requests in flight per harness (each replica batches up to
    max_batch_size); one copy of the model keeps the harness's own default."""
    if options.endpoint or options.replicas <= 1:
        return None
    return min(options.replicas * options.max_batch_size, MAX_HARNESS_PARALLELISM)


def check_endpoint(url: str, api_key_env: str | None, timeout_s: float = 10.0) -> list[str]:
    """GET <url>/v1/models once; return the model ids or raise `TargetUnavailable` (one clear message)."""
    import requests

    headers = {}
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            raise TargetUnavailable(
                f"--nemo-api-key-env names {api_key_env!r}, but that environment variable is not set. "
                "Export it with the endpoint's API key, or drop --nemo-api-key-env for an open endpoint."
            )
        headers["Authorization"] = f"Bearer {key}"
    models_url = url.rstrip("/") + "/v1/models"
    try:
        response = requests.get(models_url, headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise TargetUnavailable(
            f"The endpoint {url} is unreachable ({type(exc).__name__}: {exc}). No benchmark was run. "
            "Start the server (e.g. `nemo-eval deploy CHECKPOINT`) or fix --nemo-endpoint; the URL is the "
            "base address, without /v1."
        ) from None
    if response.status_code != 200:
        raise TargetUnavailable(
            f"The endpoint {url} answered GET /v1/models with HTTP {response.status_code}: "
            f"{response.text[:200]!r}. No benchmark was run. Check the URL and, for a protected endpoint, "
            "--nemo-api-key-env."
        )
    try:
        ids = [m["id"] for m in response.json().get("data", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        ids = []
    if not ids:
        raise TargetUnavailable(
            f"The endpoint {url} answered GET /v1/models without any model id; it is not an "
            "OpenAI-compatible server. Point --nemo-endpoint at one."
        )
    return ids


def checkpoint_sha256(path: Path) -> str:
    """Content hash of a checkpoint directory: every file's relative path and bytes, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


FULL_HASH_MAX_BYTES = 256 << 20  # below this a full SHA-256 costs well under a second; above, only the fingerprint


def checkpoint_provenance(checkpoint: Path) -> dict[str, str]:
    """What was served: the path, its format and iteration, and the identity of the files served (for a
    Megatron-Bridge root, only the iteration it serves, so a new iteration is a new checkpoint): always the
    fingerprint (checkpoint/fingerprint.py: seconds for any size), and the full SHA-256 for a small checkpoint."""
    from pytest_nemo_eval.checkpoint.fingerprint import checkpoint_fingerprint, tree_bytes
    from pytest_nemo_eval.checkpoint.layout import detect_layout

    layout = detect_layout(checkpoint)
    served = layout.weights_dir if layout.format == "megatron-bridge" else checkpoint
    out = {
        "nemo.checkpoint": str(checkpoint),
        "nemo.checkpoint_format": layout.format,
        "nemo.checkpoint_fingerprint": checkpoint_fingerprint(served),
    }
    if tree_bytes(served) <= FULL_HASH_MAX_BYTES:
        out["nemo.checkpoint_sha256"] = checkpoint_sha256(served)
    if layout.iteration is not None:
        out["nemo.checkpoint_iteration"] = str(layout.iteration)
    return out


def cache_namespace(model_id: str, provenance: dict[str, str]) -> str | None:
    """Keeps the proxy cache (and resumed results) of different weights apart: format, iteration and
    fingerprint of what was served."""
    if "nemo.checkpoint_fingerprint" not in provenance:
        return None
    iteration = provenance.get("nemo.checkpoint_iteration")
    parts = [model_id, provenance["nemo.checkpoint_format"], *([f"iter{iteration}"] if iteration else []),
             provenance["nemo.checkpoint_fingerprint"][:24]]
    return "-".join(parts)


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from pytest_nemo_eval import __version__

    out = {"nemo.version.plugin": __version__}
    for dist, key in (("megatron-core", "megatron_core"), ("nvidia-pytriton", "pytriton"), ("pytest", "pytest")):
        try:
            out[f"nemo.version.{key}"] = version(dist)
        except PackageNotFoundError:
            out[f"nemo.version.{key}"] = "not installed"
    return out


class LocalResources:
    """Deploys (or adopts) the model and runs the proxy; stop() always cleans both up."""

    def __init__(self, options: NemoOptions, progress=print) -> None:
        self.options = options
        self.progress = progress
        self.deployment = None
        self.lazy = None  # runner.lazy_deployment.LazyDeployment: the proxy's gate before a checkpoint's deployment
        self.proxy = None
        self.target: Target | None = None
        self.deployments_started = 0
        self.deploy_seconds = 0.0
        self.watch = None  # runner.deployment_watch.DeploymentWatch while a deployment of ours runs
        self._lock = threading.Lock()

    def start(self) -> "LocalResources":
        with self._lock:
            if self.target is None:
                try:
                    self._start()
                except BaseException:
                    self.stop()
                    raise
        return self

    def _start(self) -> None:
        opts = self.options
        problem = opts.target_problem()
        if problem:
            raise TargetUnavailable(problem)
        output_dir = opts.output_dir.resolve()
        output_dir.mkdir(parents=True, exist_ok=True)
        provenance = software_versions()
        if opts.endpoint:
            started = time.monotonic()
            ids = check_endpoint(opts.endpoint, opts.api_key_env)
            upstream_url, model_id = opts.endpoint.rstrip("/"), opts.model_id or ids[0]
            self.deploy_seconds = time.monotonic() - started
            provenance["nemo.endpoint"] = upstream_url
        else:
            from pytest_nemo_eval.checkpoint.layout import detect_layout
            from pytest_nemo_eval.runner.lazy_deployment import LazyDeployment
            from pytest_nemo_eval.serving.ports import free_port

            checkpoint = self._checkpoint_path()  # may train the demo first: not deployment time
            port = free_port()  # known now, so the proxy's upstream URL is too; the deployment binds it later
            upstream_url, model_id = f"http://127.0.0.1:{port}", detect_layout(checkpoint).root.name
            provenance.update(checkpoint_provenance(checkpoint))
            self.lazy = LazyDeployment(checkpoint, lambda: self._deploy_now(checkpoint, output_dir, port, model_id),
                                       progress=self.progress, log_tail=self._deploy_log_tail)
        provenance["nemo.model_id"] = model_id
        if not opts.endpoint:
            provenance["nemo.serving_backend"] = opts.serving_backend
            provenance["nemo.replicas"] = str(opts.replicas)
        provenance["nemo.deploy_seconds"] = f"{self.deploy_seconds:.2f}"
        from pytest_nemo_eval.adapters.server import ProxyServer

        from pytest_nemo_eval.adapters.response_cache import set_aside_if_corrupt

        cache_dir = opts.resolved_cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)
        unusable = set_aside_if_corrupt(cache_dir / "responses.sqlite")  # a miss for every request, never an error
        if unusable:
            self.progress(f"[nemo-eval] warning: {unusable}")
        self.proxy = ProxyServer(
            upstream_url,
            cache_path=cache_dir / "responses.sqlite",
            upstream_api_key_env=opts.api_key_env,
            log_dir=output_dir / PROXY_LOG_DIR,  # <route>/{requests,responses}.jsonl: the HTML report's examples
            upstream_gate=self.lazy,
        ).start()
        self.target = Target(
            upstream_url=upstream_url,
            model_id=model_id,
            proxy_url=self.proxy.url,
            output_dir=str(output_dir),
            cache=opts.cache,
            cache_namespace=cache_namespace(model_id, provenance),
            cache_dir=str(cache_dir),
            provenance=provenance,
            default_parallelism=default_parallelism(opts),
        )

    def ensure_live(self) -> None:
        """Deploy now if the checkpoint is not deployed yet (something needs the live model); a failed
        deployment raises `TargetUnavailable`."""
        from pytest_nemo_eval.adapters.upstream import UpstreamError

        if self.lazy is not None:
            try:
                self.lazy.ensure_live()
            except UpstreamError as exc:
                raise TargetUnavailable(str(exc)) from None

    def _deploy_log_tail(self) -> str:
        deployment = self.deployment
        return deployment.log_tail() if deployment is not None else ""

    def _deploy_now(self, checkpoint: Path, output_dir: Path, port: int, model_id: str) -> None:
        """The lazy gate's deployment (on a proxy thread): on the port the proxy already points at."""
        started = time.monotonic()
        url, served_id = self._deploy(checkpoint, output_dir, port)
        self.deploy_seconds = time.monotonic() - started
        if self.target is not None:
            self.target.provenance["nemo.deploy_seconds"] = f"{self.deploy_seconds:.2f}"
        if served_id != model_id or not url.endswith(f":{port}"):
            raise TargetUnavailable(f"the deployment serves {served_id!r} at {url}, not {model_id!r} on port {port} "
                                    "as the proxy was told; report this as a bug")

    def _checkpoint_path(self) -> Path:
        if self.options.checkpoint == "demo":
            from pytest_nemo_eval.third_party_warnings import silenced

            with silenced():  # training imports and runs megatron-core here, in the user's pytest process
                from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint

                return Path(ensure_demo_checkpoint(progress=self.progress))
        path = Path(self.options.checkpoint).expanduser().resolve()
        if not path.is_dir():
            raise TargetUnavailable(
                f"--nemo-checkpoint {self.options.checkpoint!r} is not a directory. Pass a NeMo 2.0 checkpoint "
                "directory (with context/ and weights/), or `demo` for the bundled demo model."
            )
        return path

    def _deploy(self, checkpoint: Path, output_dir: Path, port: int = 0) -> tuple[str, str]:
        from pytest_nemo_eval.serving.launcher import Deployment, DeploymentError, DeploymentSettings

        opts = self.options
        settings = DeploymentSettings(
            checkpoint=checkpoint,
            max_batch_size=opts.max_batch_size,
            tensor_parallel=opts.tensor_parallel,
            pipeline_parallel=opts.pipeline_parallel,
            backend=opts.serving_backend,
            replicas=opts.replicas,
            replica_cpus=opts.replica_cpus,
            ray_address=opts.ray_address,
            tool_parser=opts.tool_parser,
            reasoning_parser=opts.reasoning_parser,
            startup_timeout_s=opts.startup_timeout,
            log_path=output_dir / "deploy.log",
            port=port,
        )
        self.progress(f"[nemo-eval] deploying {checkpoint} ...")
        self.deployment = Deployment(settings)
        try:
            self.deployment.start()
        except DeploymentError as exc:
            raise TargetUnavailable(str(exc)) from None
        self.deployments_started += 1
        with open(output_dir / DEPLOYMENTS_LOG, "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "url": self.deployment.url, "time": time.time()}) + "\n")
        self.progress(f"[nemo-eval] deployed {self.deployment.model_id} at {self.deployment.url}")
        from pytest_nemo_eval.runner.deployment_watch import DeploymentEvents, DeploymentWatch

        DeploymentEvents(output_dir).path.unlink(missing_ok=True)  # a previous run's deaths are not this run's
        self.watch = DeploymentWatch(self.deployment, output_dir, self._redeploy, progress=self.progress).start()
        return self.deployment.url, self.deployment.model_id

    def _redeploy(self):
        """The deployment died: end what is left of it, then deploy again on the same port (the proxy's
        upstream URL stays valid). Called once, from the watch's thread."""
        from urllib.parse import urlsplit

        from pytest_nemo_eval.serving.launcher import Deployment

        dead = self.deployment
        if dead is None:
            raise TargetUnavailable("the run is stopping")
        dead.stop()
        port = urlsplit(dead.url).port
        settings = dead.settings.model_copy(update={"port": port})
        self.progress(f"[nemo-eval] redeploying {settings.checkpoint} on port {port} ...")
        fresh = Deployment(settings)
        fresh.start()  # DeploymentError: the watch declares the deployment lost
        if self.watch is None:  # the run stopped while the redeploy loaded the model
            fresh.stop()
            raise TargetUnavailable("the run stopped during the redeploy")
        self.deployment = fresh
        self.deployments_started += 1
        with open(Path(settings.log_path).parent / DEPLOYMENTS_LOG, "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "url": fresh.url, "time": time.time(), "redeploy": True}) + "\n")
        return fresh

    def stop(self) -> None:
        """Stop the proxy, then the deployment; safe to call twice and after a failed start."""
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.stop()  # first: stopping the deployment below is no death
        proxy, deployment = self.proxy, self.deployment
        self.proxy = self.deployment = None
        if self.lazy is not None:
            self.lazy.close("the run is stopping")  # a request still waiting for a deployment is answered now
        try:
            if proxy is not None:
                proxy.stop()
        finally:
            if deployment is not None:
                deployment.stop()


class ProxyControl:
    """The proxy's HTTP control routes (adapters/client.py): the same calls from the
    controller and from xdist workers."""

    def __init__(self, proxy_url: str) -> None:
        self.proxy_url = proxy_url.rstrip("/")

    def register(self, benchmark: str, adapter: dict[str, Any]) -> str:
        """Create (or re-use) the benchmark's isolated route; returns its base URL."""
        from pytest_nemo_eval.adapters.client import ProxyClientError, register_benchmark
        from pytest_nemo_eval.adapters.config import AdapterConfig

        try:
            config = AdapterConfig.parse_user(adapter, source=f"adapter config of benchmark {benchmark!r}")
            return register_benchmark(self.proxy_url, benchmark, config)
        except (ProxyClientError, ValueError) as exc:
            raise TargetUnavailable(str(exc)) from None

    def ensure_live(self) -> None:
        """The model server runs once this returns (a lazy deployment deploys now); else `TargetUnavailable`."""
        import requests

        reply = requests.post(f"{self.proxy_url}/_nemo/upstream/live", timeout=None)
        if not reply.ok:
            raise TargetUnavailable(f"{reply.status_code}: {reply.text[:2000]}")

    def benchmarks(self) -> list[str]:
        import requests

        return requests.get(f"{self.proxy_url}/_nemo/benchmarks", timeout=10).json()["benchmarks"]

    def stats(self, benchmark: str) -> dict[str, Any]:
        from pytest_nemo_eval.adapters.client import fetch_stats

        return fetch_stats(self.proxy_url, benchmark, timeout_s=10).model_dump()
