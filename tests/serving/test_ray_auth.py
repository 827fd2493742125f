"""--nemo-ray-address against a cluster started the way users start one: `ray start --head` (Ray 2.60), whose
token authentication is on by default once the head has a token (here: `ray get-auth-token --generate` in the
head's home, as a user's earlier `ray.init()` leaves one in ~/.ray/auth_token).

- The token given the way Ray documents (RAY_AUTH_TOKEN, or a file named by RAY_AUTH_TOKEN_PATH) connects, and the
  replica answers.
- No token, or a wrong one: one diagnosis naming the variables to set, within seconds, never the token itself, and
  not "start a cluster" (what users saw after 20 s of InvalidAuthToken retries).

The head runs with its own --temp-dir, home and ports, in its own process group; the fixture ends exactly those
processes (never `ray stop`, which ends every Ray on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests

pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install -e '.[ray]')")

from pytest_nemo_eval.processes import end_processes  # noqa: E402
from pytest_nemo_eval.serving.launcher import Deployment, DeploymentError, DeploymentSettings  # noqa: E402

pytestmark = pytest.mark.ray_backend
RAY_CLI = str(Path(sys.executable).with_name("ray"))
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
# `nemo-eval deploy`'s own start (imports, tokenizer) included: 9-24 s measured with 5 other test runs on the 2 cores;
# that no InvalidAuthToken retry happened at all is asserted on deploy.log
DIAGNOSIS_WITHIN_S = 60.0


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class Head:
    def __init__(self, address: str, token_file: Path, temp_dir: str, group: int) -> None:
        self.address, self.token_file, self.temp_dir, self.group = address, token_file, temp_dir, group

    def processes(self) -> list[psutil.Process]:
        """This head's processes only: its process group, or a command line naming its temp dir."""
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if os.getpgid(proc.pid) == self.group or self.temp_dir in " ".join(proc.info["cmdline"] or ()):
                    found.append(proc)
            except (ProcessLookupError, psutil.Error):
                pass
        return [p for p in found if p.pid != os.getpid()]


@pytest.fixture(scope="module")
def token_head(tmp_path_factory):
    home = tmp_path_factory.mktemp("ray-head-home")
    temp_dir = tempfile.mkdtemp(prefix="ray-auth-", dir="/tmp")  # short: Ray's unix sockets live under it
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARIABLES} | {"HOME": str(home)}
    subprocess.run([RAY_CLI, "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    gcs, client, dashboard, agent = _free_ports(4)
    started = subprocess.Popen(
        [RAY_CLI, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--temp-dir", temp_dir,
         "--num-cpus", "1", "--object-store-memory", str(100 * 1024**2), "--include-dashboard=false",
         "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client),
         "--dashboard-agent-listen-port", str(agent), "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    head = Head(f"127.0.0.1:{gcs}", home / ".ray" / "auth_token", temp_dir, started.pid)
    try:
        output, _ = started.communicate(timeout=240)
        assert started.returncode == 0, output
        assert "Token authentication is enabled for this Ray cluster" in output, output  # the default, not asked for
        yield head
    finally:
        if started.poll() is None:
            started.kill()
        processes = head.processes()
        for proc in processes:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        end_processes(processes, grace_s=15)
        left = [p for p in head.processes() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, [p.cmdline() for p in left]


@pytest.fixture
def user_env(monkeypatch, tmp_path):
    """A user with no Ray variables and an empty home (so no ~/.ray/auth_token of the machine's user applies)."""
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return monkeypatch


def _settings(checkpoint, head: Head, tmp_path: Path) -> DeploymentSettings:
    return DeploymentSettings(checkpoint=checkpoint, backend="ray", replicas=1, replica_cpus=1,
                              ray_address=head.address, log_path=tmp_path / "deploy.log")


@pytest.mark.parametrize("given", ["RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"])
def test_the_token_given_as_ray_documents_connects_and_serves(token_head, demo_checkpoint, user_env, tmp_path, given):
    token = token_head.token_file.read_text().strip()
    if given == "RAY_AUTH_TOKEN":
        user_env.setenv("RAY_AUTH_TOKEN", token)
    else:
        user_env.setenv("RAY_AUTH_TOKEN_PATH", str(token_head.token_file))
    with Deployment(_settings(demo_checkpoint, token_head, tmp_path)) as deployment:
        reply = requests.post(f"{deployment.url}/v1/completions", timeout=120, json={
            "model": deployment.model_id, "prompt": "12+34=", "max_tokens": 4, "temperature": 0, "stop": [";"]})
        assert reply.status_code == 200, reply.text
        assert requests.get(f"{deployment.url}/v1/health", timeout=30).json()["status"] == "ok"
    assert token not in (tmp_path / "deploy.log").read_text()


@pytest.mark.parametrize("given", ["nothing", "a wrong token", "RAY_AUTH_MODE=token, no token file"])
def test_a_missing_or_wrong_token_is_one_diagnosis_naming_the_variables(
        token_head, demo_checkpoint, user_env, tmp_path, given):
    if given == "a wrong token":
        user_env.setenv("RAY_AUTH_TOKEN", "0" * 32)
    elif given.startswith("RAY_AUTH_MODE"):
        user_env.setenv("RAY_AUTH_MODE", "token")
    token = token_head.token_file.read_text().strip()
    began = time.monotonic()
    with pytest.raises(DeploymentError) as failed:
        Deployment(_settings(demo_checkpoint, token_head, tmp_path)).start()
    elapsed = time.monotonic() - began
    message = str(failed.value)
    lead = "rejected this run's authentication token" if given == "a wrong token" else \
        "requires token authentication and this run sent no token"
    assert f"The Ray cluster at --nemo-ray-address {token_head.address} {lead}" in message, message
    assert all(name in message for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE=token")), message
    assert "InvalidAuthToken" not in message and "Start it" not in message, message  # no retries, no wrong advice
    log = (tmp_path / "deploy.log").read_text()
    assert "InvalidAuthToken" not in log, log  # diagnosed before ray.init, not after its retries
    assert token not in message and token not in log
    assert elapsed < DIAGNOSIS_WITHIN_S, elapsed
    print(f"{given}: diagnosed in {elapsed:.1f} s")
