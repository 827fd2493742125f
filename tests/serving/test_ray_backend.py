"""The Ray Serve backend against real Ray: a private head that leaves nothing, a two-node cluster that
keeps running and keeps no application of ours, replicas spread over both nodes, a replica killed
mid-run, and the resource and address errors that must come within seconds.

The oracle for answers is the PyTriton deployment (`demo_deployment`): the same checkpoint, greedy,
so every answer through Ray must equal its answer.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

from pytest_nemo_eval.serving.launcher import Deployment, DeploymentError, DeploymentSettings  # noqa: E402

RAY_PROCESS_NAMES = ("raylet", "gcs_server", "ray::", "default_worker", "dashboard", "log_monitor")
NODE_STORE_BYTES = 100 * 1024**2


def _is_ray(proc: psutil.Process) -> bool:
    try:
        text = proc.name() + " " + " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return any(name in text for name in RAY_PROCESS_NAMES)


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _listening_ports(processes: list[psutil.Process]) -> set[tuple[str, int]]:
    ports = set()
    for proc in processes:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    ports.add((conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            pass
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _answers(url: str, model: str, prompts: list[str], threads: int = 8) -> list[str]:
    def one(prompt: str) -> str:
        reply = requests.post(f"{url}/v1/completions", timeout=300,
                              json={"model": model, "prompt": prompt, "max_tokens": 6, "temperature": 0, "stop": [";"]})
        assert reply.status_code == 200, reply.text
        return reply.json()["choices"][0]["text"]

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, prompts))


@pytest.fixture(scope="module")
def prompts(heldout_addition) -> list[str]:
    return [item["prompt"] for item in heldout_addition][:48]


LONG_PROMPT, LONG_TOKENS = "12+34=", 800  # ignore_eos, no stop: seconds of decoding


def _long_answer(url: str, model: str) -> str:
    reply = requests.post(f"{url}/v1/completions", timeout=600, json={
        "model": model, "prompt": LONG_PROMPT, "max_tokens": LONG_TOKENS, "temperature": 0, "ignore_eos": True})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["usage"]["completion_tokens"] == LONG_TOKENS, body["usage"]  # long: exactly max_tokens
    return body["choices"][0]["text"]


def _replica_decoding(url: str, timeout_s: float = 120) -> dict:
    """The replica that reports a request decoding now (replicas report every 0.25 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replicas = requests.get(f"{url}/v1/health", timeout=30).json()["replicas"]
        decoding = [r for r in replicas.values() if r["engine"]["active_rows"] > 0]
        if decoding:
            assert len(decoding) == 1, replicas  # one request in flight: on one replica
            return decoding[0]
        time.sleep(0.1)
    raise AssertionError(f"no replica reported the long request decoding within {timeout_s} s")


@pytest.fixture(scope="module")
def pytriton_long_answer(demo_deployment) -> str:
    return _long_answer(demo_deployment.url, demo_deployment.model_id)


@pytest.fixture(scope="module")
def pytriton_answers(demo_deployment, prompts) -> list[str]:
    return _answers(demo_deployment.url, demo_deployment.model_id, prompts)


def test_own_head_serves_and_sigterm_leaves_no_ray_process_or_port(demo_checkpoint, tmp_path):
    """No address: the deploy starts a private head on 127.0.0.1; SIGTERM to `nemo-eval deploy` (a CI job
    cancelled) ends every raylet, GCS and worker it started, and frees their ports."""
    settings = DeploymentSettings(checkpoint=demo_checkpoint, backend="ray", replicas=1, replica_cpus=1,
                                  log_path=tmp_path / "deploy.log", stop_grace_s=60)
    deployment = Deployment(settings).start()
    try:
        tree = _tree(deployment.process.pid)
        ray_processes = [p for p in tree if _is_ray(p)]
        assert any("raylet" in p.name() for p in ray_processes) and any("gcs_server" in p.name() for p in ray_processes)
        ports = _listening_ports(tree)
        assert ports, "the private head listens somewhere"
        health = requests.get(f"{deployment.url}/v1/health", timeout=30).json()
        assert health["status"] == "ok" and health["backend"] == "ray"
        os.kill(deployment.process.pid, signal.SIGTERM)
        deployment.process.wait(120)
        gone, alive = psutil.wait_procs(tree, timeout=30)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
        assert all(_port_free(port) for _ip, port in ports), ports
        assert "Traceback" not in (tmp_path / "deploy.log").read_text()
    finally:
        deployment.stop()


def test_replicas_that_cannot_fit_fail_within_seconds_naming_asked_and_available(demo_checkpoint, tmp_path):
    too_many = (os.cpu_count() or 1) + 1
    settings = DeploymentSettings(checkpoint=demo_checkpoint, backend="ray", replicas=1, replica_cpus=too_many,
                                  log_path=tmp_path / "deploy.log")
    began = time.monotonic()
    with pytest.raises(DeploymentError) as failed:
        Deployment(settings).start()
    elapsed = time.monotonic() - began
    message = str(failed.value)
    assert f"1 replica(s) of {too_many} CPU each do not fit" in message and "at most 0 fit" in message, message
    assert f"{os.cpu_count()} CPU" in message  # what the cluster has
    assert elapsed < 120, elapsed  # Ray's own start, not a wait for resources that never come
    assert "exited with code 2" in message  # one clear error, no traceback


def test_unreachable_ray_address_is_one_clear_error(demo_checkpoint, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings = DeploymentSettings(checkpoint=demo_checkpoint, backend="ray", ray_address=f"127.0.0.1:{closed}",
                                  log_path=tmp_path / "deploy.log")
    began = time.monotonic()
    with pytest.raises(DeploymentError) as failed:
        Deployment(settings).start()
    assert f"The Ray cluster at --nemo-ray-address 127.0.0.1:{closed} is unreachable" in str(failed.value)
    assert time.monotonic() - began < 60


@pytest.fixture(scope="module")
def two_node_cluster():
    """A real Ray cluster of two nodes on this machine (ray.cluster_utils.Cluster), 1 CPU each: a replica of
    1 CPU fits once per node, so 2 replicas must use both."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": NODE_STORE_BYTES})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=NODE_STORE_BYTES)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def test_two_node_cluster_serves_from_both_nodes_survives_a_replica_death_and_keeps_no_app_of_ours(
        two_node_cluster, demo_checkpoint, prompts, pytriton_answers, pytriton_long_answer, tmp_path):
    from pytest_nemo_eval.adapters.server import ProxyServer

    settings = DeploymentSettings(checkpoint=demo_checkpoint, backend="ray", replicas=2, replica_cpus=1,
                                  ray_address=two_node_cluster.address, log_path=tmp_path / "deploy.log")
    with Deployment(settings) as deployment:
        assert _answers(deployment.url, deployment.model_id, prompts) == pytriton_answers
        replicas = _replicas_when_counted(deployment.url, len(prompts))
        assert len(replicas) == 2 and len({r["node_id"] for r in replicas.values()}) == 2, replicas
        assert all(r["requests"] > 0 for r in replicas.values()), replicas  # both nodes served

        # a replica dies with a request known to be on it: one long greedy generation, the only request in
        # flight, is seen decoding on a replica (its active_rows in /v1/health); that replica is SIGKILLed. Its
        # 5xx must be retried by the proxy onto the other replica, with PyTriton's answer.
        proxy = ProxyServer(deployment.url).start()
        try:
            route = proxy.register_benchmark("replica-death")
            with ThreadPoolExecutor(1) as pool:
                running = pool.submit(_long_answer, route, deployment.model_id)
                victim = _replica_decoding(deployment.url)
                os.kill(victim["pid"], signal.SIGKILL)
                answer = running.result(timeout=600)
            stats = proxy.stats("replica-death")
        finally:
            proxy.stop()
        assert answer == pytriton_long_answer
        assert stats.requests == 1 and stats.errors == 0 and stats.retries > 0, stats
        print(f"replica pid {victim['pid']} killed while decoding: {stats.retries} proxy retries")
    # the cluster we did not start is still up, and holds no application of ours
    from ray import serve

    ray.init(address=two_node_cluster.address, log_to_driver=False)
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        assert not [name for name in serve.status().applications if name.startswith("nemo-eval-")]
    finally:
        ray.shutdown()


def _replicas_when_counted(url: str, expected: int, timeout_s: float = 30) -> dict:
    """The per-replica counts of /v1/health once they add up to what was sent (replicas report every 0.25 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        replicas = requests.get(f"{url}/v1/health", timeout=30).json()["replicas"]
        if sum(r["requests"] for r in replicas.values()) >= expected or time.monotonic() > deadline:
            return replicas
        time.sleep(0.5)
