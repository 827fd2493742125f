"""The Ray Serve backend: N replicas of the model behind the one OpenAI front, on one node or a Ray cluster.

Each replica (`EngineReplica`, a Serve deployment) loads the checkpoint into its own
GenerationEngine (in-flight batching, per-request sampling, as with PyTriton). The
OpenAI front stays in the `nemo-eval deploy` process and reaches the replicas
through a Serve DeploymentHandle, whose router spreads requests over every
running replica on every node; Serve's HTTP proxies are not started.

Cluster ownership:
- no address: this process starts its own Ray head (`address="local"`, bound to
  127.0.0.1, no dashboard) and shuts it down in stop(); the launcher's process-group
  kill (processes.py) ends whatever a crash leaves.
- an address (auto, host:port, ray://host:port): connect, deploy an application
  with a name unique to this run, and delete only that application in stop();
  the cluster and other applications are never touched.

Token authentication (Ray 2.60: `ray start --head` turns it on when the head has a
token, e.g. ~/.ray/auth_token): Ray's driver sends a token to an explicitly named
address only with RAY_AUTH_MODE=token. A token the user gives explicitly
(RAY_AUTH_TOKEN, or a file named by RAY_AUTH_TOKEN_PATH) turns that mode on for
this process; before ray.init one GCS call with exactly the metadata Ray will
send says whether the cluster takes it, so a missing or wrong token is one
diagnosis naming the variables in milliseconds, not 20 s of InvalidAuthToken
retries ending in "start a cluster". The token itself is never printed.

Health: Serve calls each replica's `check_health`, which fails when its engine is
dead, so Serve replaces it; /v1/health answers 503 while no replica runs.
Replicas report their request counts to a small named actor (`StatsBoard`) so
/v1/health shows how the load spread (per replica, with its node).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterator

import psutil

from pytest_nemo_eval.processes import end_processes
from pytest_nemo_eval.serving.backend import BackendUnavailable, Health, ModelInfo
from pytest_nemo_eval.serving.generation import (
    GenerationDelta,
    GenerationFailed,
    GenerationRequest,
    GenerationResult,
    delta_of_event,
    error_kind,
)
from pytest_nemo_eval.serving.settings import ServeSettings

LOGGER = logging.getLogger(__name__)
DEPLOYMENT_NAME = "EngineReplica"
OWN_HEAD_OBJECT_STORE_BYTES = 200 * 1024**2  # the replicas exchange small JSON-like objects only
CONNECT_TIMEOUT_S = 10.0
AUTH_MODE_ENV, AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
REQUEST_TIMEOUT_S = 600.0
REPORT_EVERY_S = 0.25
HEAD_EXIT_GRACE_S = 5.0


# -- inside the cluster ---------------------------------------------------------------------------
class StatsBoard:
    """A named actor the replicas report to: replica id -> {node_id, pid, requests, engine}."""

    def __init__(self) -> None:
        self.replicas: dict[str, dict[str, Any]] = {}

    def report(self, replica: str, state: dict[str, Any]) -> None:
        self.replicas[replica] = state

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.replicas


class EngineReplica:
    """One Serve replica: one GenerationEngine loaded from the checkpoint."""

    def __init__(self, settings_json: str, board_name: str, namespace: str) -> None:
        import ray
        from ray import serve

        from pytest_nemo_eval.serving.engine_source import open_engine
        from pytest_nemo_eval.third_party_warnings import silence_in_this_process

        silence_in_this_process()
        self.engine = open_engine(ServeSettings.model_validate_json(settings_json))
        self.replica = serve.get_replica_context().replica_tag
        self.node_id = ray.get_runtime_context().get_node_id()
        self.requests = 0
        self._board = ray.get_actor(board_name, namespace=namespace)
        self._reported: tuple[int, int] | None = None
        self._reporter: asyncio.Task | None = None

    def _state(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "pid": os.getpid(), "requests": self.requests,
                "engine": self.engine.stats().model_dump()}

    def _ensure_reporter(self) -> None:
        """Report from the replica's event loop (started lazily: __init__ may run outside it)."""
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.get_running_loop().create_task(self._report_loop())

    async def _report_loop(self) -> None:
        """Report when the finished count or the requests decoding now change (so /v1/health shows where a
        request is running, not only where it ran)."""
        while True:
            state = self._state()
            now = (state["requests"], state["engine"]["active_rows"])
            if now != self._reported:
                self._reported = now
                self._board.report.remote(self.replica, state)
            await asyncio.sleep(REPORT_EVERY_S)

    async def generate(self, requests: list[dict]) -> list[dict]:
        """Every request joins the engine's running batch; each answer is its result or {"error", "kind"}."""
        self._ensure_reporter()
        pending: list[Future | dict] = []
        for raw in requests:
            try:
                pending.append(self.engine.submit([GenerationRequest.model_validate(raw)])[0])
            except Exception as exc:  # noqa: BLE001 - a request's failure is its answer
                pending.append(_error(exc))
        answers = []
        for item in pending:
            if isinstance(item, dict):
                answers.append(item)
                continue
            try:
                answers.append((await asyncio.wrap_future(item)).model_dump())
            except Exception as exc:  # noqa: BLE001
                answers.append(_error(exc))
        self.requests += len(requests)
        return answers

    async def stream(self, raw: dict):
        """The request's deltas as the engine decodes them; a cancelled call (client gone) cancels it in the engine."""
        from pytest_nemo_eval.serving.generation import merge_deltas

        self._ensure_reporter()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        request = GenerationRequest.model_validate(raw)
        if request.request_id is None:
            request.request_id = uuid.uuid4().hex
        try:
            future = self.engine.submit(
                [request], on_delta=lambda delta: loop.call_soon_threadsafe(events.put_nowait, delta))[0]
        except Exception as exc:  # noqa: BLE001
            yield _error(exc)
            return
        future.add_done_callback(lambda done: loop.call_soon_threadsafe(events.put_nowait, done))
        finished = False
        try:
            while True:
                items = [await events.get()]
                while not events.empty():
                    items.append(events.get_nowait())
                deltas = [item for item in items if not isinstance(item, Future)]
                if deltas:
                    yield merge_deltas(deltas).model_dump()
                ended = [item for item in items if isinstance(item, Future)]
                if ended:
                    finished = True
                    if ended[0].exception() is not None:
                        yield _error(ended[0].exception())
                    return
        finally:
            if not finished:
                self.engine.cancel(request.request_id)
            self.requests += 1

    def check_health(self) -> None:
        """Serve replaces a replica whose check fails: a dead engine must stop receiving traffic."""
        if not self.engine.alive:
            raise RuntimeError("the replica's generation engine is not running")

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


def _error(exc: BaseException) -> dict[str, str]:
    return {"error": f"{type(exc).__name__}: {exc}", "kind": error_kind(exc)}


# -- in the `nemo-eval deploy` process -------------------------------------------------------------
class RayBackend:
    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.app_name = f"nemo-eval-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.namespace = self.app_name
        self.owns_cluster = settings.ray_address is None
        self._connected = False
        self._deployed = False
        self._handle = None
        self._stream_handle = None
        self._board = None
        self._auth_mode_ours = False

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> ModelInfo:
        os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"  # no Ray call of this process may start a cluster by itself
        self._auth_mode_ours = self.settings.ray_address is not None and _use_given_token(self.settings.ray_address)
        import ray
        from ray import serve

        info = _model_info(self.settings.checkpoint)  # a bad checkpoint fails before any cluster work
        self._connect(ray)
        need = self._replica_resources(ray)
        _check_fit(ray, need, self.settings.replicas)
        serve.start(proxy_location="Disabled")
        self._board = ray.remote(StatsBoard).options(name=f"{self.app_name}-board", namespace=self.namespace,
                                                     num_cpus=0).remote()
        s = self.settings
        app = serve.deployment(EngineReplica).options(
            name=DEPLOYMENT_NAME, num_replicas=s.replicas,
            ray_actor_options={"num_cpus": need.get("CPU", 0), "num_gpus": need.get("GPU", 0)},
            max_ongoing_requests=4 * s.max_batch_size,  # the engine queues past its slots; Serve's default is 5
            health_check_period_s=2, health_check_timeout_s=30, graceful_shutdown_timeout_s=5,
        ).bind(s.model_dump_json(), f"{self.app_name}-board", self.namespace)
        self._deployed = True
        handle = serve._run(app, name=self.app_name, route_prefix=None, _blocking=False)
        self._wait_running(serve)
        self._handle = handle.options(method_name="generate")
        self._stream_handle = handle.options(method_name="stream", stream=True)
        return info

    def _connect(self, ray) -> None:
        address = self.settings.ray_address
        kwargs: dict[str, Any] = {"namespace": self.namespace, "log_to_driver": False,
                                  "configure_logging": False}
        if address is None:
            kwargs.update(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                          object_store_memory=OWN_HEAD_OBJECT_STORE_BYTES)
        else:
            _check_reachable(address)
            _check_auth(address, mode_set_by_us=self._auth_mode_ours)
            kwargs["address"] = address
        handlers = _signal_handlers()
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as exc:
            if address is None:
                raise
            if isinstance(exc, ray.exceptions.AuthenticationError) or "InvalidAuthToken" in str(exc):
                raise BackendUnavailable(_auth_diagnosis(address, sent_token=_auth_enabled())) from None
            raise BackendUnavailable(
                f"Cannot connect to the Ray cluster at --nemo-ray-address {address} ({type(exc).__name__}: {exc}). "
                "Start it (`ray start --head` on the head node), or fix the address (auto, HOST:PORT of the "
                "head's GCS, or ray://HOST:10001), or drop the option to run a private local head.") from None
        finally:
            _restore(handlers)
        self._connected = True

    def _replica_resources(self, ray) -> dict[str, float]:
        """GPUs = tensor x pipeline parallel when the replicas run on CUDA, else CPUs = --nemo-replica-cpus."""
        s = self.settings
        gpus_in_cluster = ray.cluster_resources().get("GPU", 0)
        if s.device == "cuda" or (s.device == "auto" and gpus_in_cluster > 0):
            return {"CPU": 1.0, "GPU": float(s.tensor_parallel * s.pipeline_parallel)}
        return {"CPU": float(s.replica_cpus)}

    def _wait_running(self, serve) -> None:
        """Until every replica runs; a failed deployment is one error with Serve's reason."""
        while True:
            status = serve.status().applications.get(self.app_name)
            if status is not None and status.status == "RUNNING":
                return
            if status is not None and status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                reasons = [status.message] + [d.message for d in status.deployments.values()]
                raise RuntimeError(f"Ray Serve could not start the replicas of {self.settings.checkpoint}: "
                                   + " ".join(r for r in reasons if r))
            time.sleep(0.5)

    def stop(self) -> None:
        """Delete our application; then shut down the head if we started it, else only disconnect. Idempotent."""
        if not self._connected:
            return
        import ray
        from ray import serve

        self._handle = self._stream_handle = None
        # our head's processes (GCS, raylet, its agents, workers): ray.shutdown() stops the head, but its
        # agents were measured to outlive it by 30 s and more; whatever is left after a grace is killed
        head = psutil.Process().children(recursive=True) if self.owns_cluster else []
        began = time.monotonic()
        try:
            if self.owns_cluster:
                # ray.shutdown() below ends our head with every actor in it. serve.shutdown() or an application
                # delete first only waited on the replicas (12 s to past the 30 s grace, measured). Serve's
                # handle router in this process then fails its next long-poll (RAY_ENABLE_AUTO_CONNECT=0 keeps
                # it from starting a new local Ray, which it did without); that asyncio error is expected noise.
                logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            elif self._deployed:
                try:
                    serve.delete(self.app_name, _blocking=True)
                except Exception:  # noqa: BLE001 - a cluster gone away: nothing left to delete
                    LOGGER.warning("deleting Ray Serve application %s failed", self.app_name, exc_info=True)
            if self._board is not None and not self.owns_cluster:
                ray.kill(self._board)
            self._board = None
        finally:
            self._connected = self._deployed = False
            ray.shutdown()
            end_processes(head, grace_s=HEAD_EXIT_GRACE_S)
            LOGGER.warning("Ray backend stopped in %.1f s (%s)", time.monotonic() - began,
                           "own head shut down" if self.owns_cluster else f"application {self.app_name} deleted")

    # -- serving ------------------------------------------------------------------------------------
    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        assert self._handle is not None, "start() first"
        try:
            answers = self._handle.remote([r.model_dump() for r in requests]).result(timeout_s=REQUEST_TIMEOUT_S)
        except Exception as exc:  # a replica that died mid-request, a timeout: the server's fault (HTTP 500)
            raise GenerationFailed(f"the Ray Serve replica failed ({type(exc).__name__}: {exc})") from None
        return [_result(answer) for answer in answers]

    def stream(self, request: GenerationRequest) -> Iterator[GenerationDelta]:
        assert self._stream_handle is not None, "start() first"
        response = self._stream_handle.remote(request.model_dump())
        finished = False
        try:
            for event in response:
                try:
                    delta = delta_of_event(event)
                except GenerationFailed:
                    finished = True  # the replica ended the request itself: nothing to cancel
                    raise
                yield delta
                if delta.finish_reason is not None:
                    finished = True
                    return
        except GenerationFailed:
            raise
        except Exception as exc:  # noqa: BLE001
            finished = True
            raise GenerationFailed(f"the Ray Serve replica failed ({type(exc).__name__}: {exc})") from None
        finally:
            if not finished:
                response.cancel()  # the replica's generator is cancelled and frees the engine slot

    def cancel(self, request_id: str) -> None:
        """Nothing to do: closing the stream cancels the replica's call, which cancels the request there."""

    def stats(self) -> dict[str, Any]:
        import ray

        stats: dict[str, Any] = {"backend": "ray", "application": self.app_name, "replicas": {}}
        if self._board is not None:
            try:
                stats["replicas"] = ray.get(self._board.snapshot.remote(), timeout=10)
            except Exception as exc:  # noqa: BLE001
                stats["replicas_error"] = f"{type(exc).__name__}: {exc}"
        return stats

    def health(self) -> Health:
        from ray import serve

        try:
            status = serve.status().applications.get(self.app_name)
        except Exception as exc:  # noqa: BLE001
            return Health(False, f"the Ray cluster does not answer ({type(exc).__name__}: {exc})")
        if status is None:
            return Health(False, f"the Ray Serve application {self.app_name} is gone")
        deployment = status.deployments.get(DEPLOYMENT_NAME)
        running = deployment.replica_states.get("RUNNING", 0) if deployment else 0
        if running == 0:
            return Health(False, f"no replica is running (application {status.status}: {status.message})")
        return Health(True)


def _signal_handlers() -> dict:
    """SIGTERM/SIGINT handlers before ray.init, which installs a native handler that kills the driver on the
    spot (measured: SIGTERM ended `nemo-eval deploy` mid-cleanup, its head's agents left running)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def _result(answer: dict) -> GenerationResult:
    if "error" in answer:
        raise GenerationFailed(answer["error"], answer.get("kind", "server_error"))
    return GenerationResult.model_validate(answer)


def _model_info(checkpoint: Path) -> ModelInfo:
    """The tokenizer and context length for the front, read without loading the weights."""
    from pytest_nemo_eval.checkpoint.config import read_architecture
    from pytest_nemo_eval.checkpoint.loader import check_layout
    from pytest_nemo_eval.checkpoint.tokenizer import load_tokenizer

    root = check_layout(Path(checkpoint))
    arch = read_architecture(root / "context")
    return ModelInfo(model_id=root.name, tokenizer=load_tokenizer(root / "context"), max_context=arch.seq_length)


def _check_reachable(address: str) -> None:
    """host:port and ray://host:port answer a TCP connect within seconds, or one clear error (no long retries)."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise BackendUnavailable(
            f"--nemo-ray-address {address!r} is not auto, HOST:PORT or ray://HOST:PORT.")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise BackendUnavailable(
            f"The Ray cluster at --nemo-ray-address {address} is unreachable ({exc}). Start it (`ray start --head` "
            "on the head node) or fix the address; drop the option to run a private local head.") from None


def _token_source() -> str | None:
    """Where Ray's token loader takes the token from, in its order (never the token itself)."""
    if os.environ.get(AUTH_TOKEN_ENV, "").strip():
        return f"the {AUTH_TOKEN_ENV} environment variable"
    if os.environ.get(AUTH_TOKEN_PATH_ENV):
        return f"{AUTH_TOKEN_PATH_ENV}={os.environ[AUTH_TOKEN_PATH_ENV]}"
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _use_given_token(address: str) -> bool:
    """RAY_AUTH_MODE unset and a token given explicitly (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH; for `auto`, as Ray
    itself does, ~/.ray/auth_token too): token mode for this process. -> whether we set it."""
    if AUTH_MODE_ENV in os.environ:
        return False  # the user's explicit choice
    given = os.environ.get(AUTH_TOKEN_ENV, "").strip() or os.environ.get(AUTH_TOKEN_PATH_ENV)
    if not given and not (address == "auto" and _token_source()):
        return False
    os.environ[AUTH_MODE_ENV] = "token"
    return True


def _refresh_auth_config() -> None:
    """Ray's config and token loader re-read RAY_AUTH_MODE and the token (as Ray's own _enable_token_auth does)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _auth_enabled() -> bool:
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    return is_token_auth_enabled()


def _check_auth(address: str, mode_set_by_us: bool) -> None:
    """One GCS call with the metadata Ray's driver will send: a cluster that wants a token this run lacks, or gets
    a wrong one, is one clear error at once. A token mode we set ourselves is dropped for a cluster without auth
    (the driver's own servers would otherwise demand a token the cluster does not send)."""
    import grpc
    from ray._private import services
    from ray._private.authentication.grpc_authentication_client_interceptor import (
        _get_authentication_metadata_tuple,
    )
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    from ray.exceptions import AuthenticationError

    if address.startswith("ray://"):
        return  # Ray Client's server, not the GCS: ray.init's own auth error is diagnosed
    target = services.canonicalize_bootstrap_address(address) if address == "auto" else address
    if target is None:
        return  # no cluster found: ray.init says so
    _refresh_auth_config()

    def refused(metadata) -> bool:
        with grpc.insecure_channel(target) as channel:
            try:
                gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                    gcs_service_pb2.GetClusterIdRequest(), metadata=metadata, timeout=CONNECT_TIMEOUT_S)
            except grpc.RpcError as exc:
                return exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return False  # answered, or failed otherwise: ray.init reports that

    try:
        metadata = _get_authentication_metadata_tuple()
    except AuthenticationError:  # token mode but no readable token (RAY_AUTH_TOKEN_PATH names no file)
        metadata = None
    if refused(metadata or ()):
        raise BackendUnavailable(_auth_diagnosis(address, sent_token=bool(metadata)))
    if metadata != () and mode_set_by_us and not refused(()):
        os.environ.pop(AUTH_MODE_ENV, None)
        _refresh_auth_config()


def _holds_text(path: Path) -> bool:
    try:
        return bool(path.read_text().strip())
    except OSError:
        return False


def _auth_diagnosis(address: str, sent_token: bool) -> str:
    source = _token_source()
    mode = os.environ.get(AUTH_MODE_ENV)
    if sent_token:
        what = (f"rejected this run's authentication token (taken from {source}): it is not the token the cluster "
                "was started with.")
    else:
        what = "requires token authentication and this run sent no token"
        if mode is not None and mode.lower() != "token":
            what += f" ({AUTH_MODE_ENV}={mode} here)"
        elif os.environ.get(AUTH_TOKEN_PATH_ENV) and not _holds_text(Path(os.environ[AUTH_TOKEN_PATH_ENV])):
            what += f" ({AUTH_TOKEN_PATH_ENV} names {os.environ[AUTH_TOKEN_PATH_ENV]}, which is missing or empty)"
        elif source:
            what += (f" ({source} exists here, but Ray sends it to an explicitly named address only with "
                     f"{AUTH_MODE_ENV}=token)")
        what += "."
    return (f"The Ray cluster at --nemo-ray-address {address} {what} Give the cluster's token (print it on the head "
            f"node with `ray get-auth-token`): set {AUTH_TOKEN_ENV} to it, or {AUTH_TOKEN_PATH_ENV} to a file that "
            f"holds it, or put it in ~/.ray/auth_token and set {AUTH_MODE_ENV}=token. (`ray start --head` in Ray "
            f"2.60 turns token authentication on when the head has a token; {AUTH_MODE_ENV}=disabled before "
            "`ray start` turns it off.)")


def _check_fit(ray, need: dict[str, float], replicas: int) -> None:
    """Fail at once when the replicas cannot all be placed, instead of Serve waiting forever for resources."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    fits = 0
    for node in nodes:
        have = node.get("Resources", {})
        fits += min(math.floor(have.get(name, 0) / amount + 1e-9) for name, amount in need.items())
    if fits >= replicas:
        return
    asked = ", ".join(f"{amount:g} {name}" for name, amount in need.items())
    available = "; ".join(
        f"node {node.get('NodeManagerAddress')}: "
        + ", ".join(f"{node.get('Resources', {}).get(name, 0):g} {name}" for name in need)
        for node in nodes) or "no node"
    raise BackendUnavailable(
        f"{replicas} replica(s) of {asked} each do not fit this Ray cluster ({available}); at most {fits} fit. "
        "Lower --nemo-replicas or --nemo-replica-cpus, or add nodes.")


def create(settings: ServeSettings) -> RayBackend:
    return RayBackend(settings)
