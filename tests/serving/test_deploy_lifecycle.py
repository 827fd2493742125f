"""`nemo-eval deploy` and `Deployment`: bad input fails fast and clearly, stop leaves nothing behind.

These start their own processes (not the shared deployment), because they
check process and port cleanup.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests

from pytest_nemo_eval.serving.launcher import Deployment, DeploymentError, DeploymentSettings
from pytest_nemo_eval.serving.ports import port_in_use

DEPLOY = [sys.executable, "-m", "pytest_nemo_eval.cli", "deploy"]


def _session_processes(session_id: int) -> list[psutil.Process]:
    alive = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == session_id and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return alive


def _deploy_and_fail(args: list[str]) -> tuple[subprocess.CompletedProcess, float, list]:
    began = time.monotonic()
    process = subprocess.Popen([*DEPLOY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    stdout, stderr = process.communicate(timeout=120)
    elapsed = time.monotonic() - began
    leftovers = _session_processes(process.pid)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), elapsed, leftovers


def test_missing_checkpoint_path_is_a_clear_error(tmp_path):
    result, elapsed, leftovers = _deploy_and_fail(["--nemo-checkpoint", str(tmp_path / "nope"), "--port", "0"])
    assert result.returncode == 2
    assert "does not exist" in result.stderr and str(tmp_path / "nope") in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert elapsed < 60 and leftovers == []


def test_directory_that_is_not_a_checkpoint_names_what_is_missing(tmp_path):
    (tmp_path / "context").mkdir()
    result, _elapsed, leftovers = _deploy_and_fail(["--nemo-checkpoint", str(tmp_path), "--port", "0"])
    assert result.returncode == 2
    assert "weights/" in result.stderr and "not a NeMo 2.0 checkpoint" in result.stderr
    assert "Traceback" not in result.stderr and leftovers == []


def test_port_in_use_is_a_clear_error_before_the_model_loads(demo_checkpoint):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result, elapsed, leftovers = _deploy_and_fail(["--nemo-checkpoint", str(demo_checkpoint), "--port", str(port)])
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr and leftovers == []
    assert elapsed < 60


def test_bad_option_value_is_a_clear_error(tmp_path):
    result, _elapsed, leftovers = _deploy_and_fail(["--nemo-checkpoint", str(tmp_path), "--max-batch-size", "0"])
    assert result.returncode == 2
    assert "--max-batch-size must be at least 1" in result.stderr and leftovers == []


def test_a_kv_cache_too_large_for_the_machine_is_a_clear_error_at_startup(demo_checkpoint):
    """A hundred million slots need ~18 TiB of KV cache: refused before allocating, with the fix to apply."""
    result, elapsed, leftovers = _deploy_and_fail(
        ["--nemo-checkpoint", str(demo_checkpoint), "--port", "0", "--max-batch-size", "100000000"])
    assert result.returncode == 2
    assert "KV cache" in result.stderr and "GiB free" in result.stderr and "lower --max-batch-size" in result.stderr
    assert "Traceback" not in result.stderr and leftovers == []
    assert elapsed < 60


def _edit_model_yaml(checkpoint: Path, **changes) -> None:
    import yaml

    path = checkpoint / "context" / "model.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"].update(changes)
    path.write_text(yaml.safe_dump(document))


BAD_CHECKPOINTS = {
    "mixture_of_experts": (lambda c: _edit_model_yaml(c, num_moe_experts=8), "num_moe_experts: 8", "model.yaml"),
    "unknown_activation": (
        lambda c: _edit_model_yaml(c, activation_func={"_target_": "mypkg.swish", "_call_": False}),
        "activation_func: mypkg.swish", "model.yaml"),
    "unservable_field": (lambda c: _edit_model_yaml(c, multi_latent_attention=True), "multi_latent_attention",
                         "model.yaml"),
    "config_weight_shape_mismatch": (lambda c: _edit_model_yaml(c, ffn_hidden_size=256), "ffn_hidden_size",
                                     "model.yaml"),
    "tokenizer_without_usable_files": (
        lambda c: [p.unlink() for p in (c / "context" / "nemo_tokenizer").glob("tokenizer*.json")],
        "No tokenizer found", "nemo_tokenizer"),
}


@pytest.mark.parametrize("damage", BAD_CHECKPOINTS)
def test_an_unservable_checkpoint_fails_in_seconds_with_one_paragraph(demo_checkpoint, tmp_path, damage):
    import shutil

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(demo_checkpoint, checkpoint)
    apply_damage, names_field, names_file = BAD_CHECKPOINTS[damage]
    apply_damage(checkpoint)
    result, elapsed, leftovers = _deploy_and_fail(["--nemo-checkpoint", str(checkpoint), "--port", "0"])
    assert result.returncode == 2, result.stderr
    assert names_field in result.stderr and names_file in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and leftovers == []
    assert elapsed < 60


def test_launcher_reports_a_failed_start_with_the_log_tail(tmp_path):
    settings = DeploymentSettings(checkpoint=tmp_path / "missing", startup_timeout_s=60)
    with pytest.raises(DeploymentError) as caught:
        Deployment(settings).start()
    message = str(caught.value)
    assert "exited with code 2" in message and "does not exist" in message and "Full log:" in message


def _is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1, also written as an IPv4-mapped IPv6 address (::ffff:127.0.0.1)."""
    address = ipaddress.ip_address(ip)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def _listening_ports(procs: list[psutil.Process]) -> set[tuple[str, int]]:
    ports = set()
    for proc in procs:
        try:
            ports |= {(c.laddr.ip, c.laddr.port) for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            continue
    return ports


@pytest.mark.parametrize("how", ["stop", "sigterm"])
def test_stop_frees_every_port_and_leaves_no_process(demo_checkpoint, how):
    """A second real deployment: its HTTP and Triton ports listen on 127.0.0.1 only, and go away on stop."""
    deployment = Deployment(DeploymentSettings(checkpoint=demo_checkpoint, max_batch_size=4)).start()
    try:
        assert requests.get(f"{deployment.url}/v1/health", timeout=30).json()["status"] == "ok"
        root = psutil.Process(deployment.process.pid)
        family = [root, *root.children(recursive=True)]
        assert any("tritonserver" in p.name() for p in family)
        listening = _listening_ports(family)
        assert len(listening) >= 3 and all(_is_loopback(ip) for ip, _ in listening), listening
        if how == "sigterm":  # the way a supervisor stops it: the deploy process itself shuts down cleanly
            root.send_signal(signal.SIGTERM)
            assert deployment.process.wait(60) == 0
    finally:
        deployment.stop()
        deployment.stop()  # idempotent
    gone, alive = psutil.wait_procs(family, timeout=60)  # stop() waited already; a hang guard
    assert alive == []
    assert not any(port_in_use(ip, port) for ip, port in listening)


def test_long_home_directory_does_not_break_triton_and_the_workspace_is_removed(demo_checkpoint, tmp_path, monkeypatch):
    """PyTriton keeps AF_UNIX sockets in its workspace; under a long HOME (a CI runner's, a
    pytester dir) its default ~/.cache/pytriton location made them too long to bind."""
    long_home = tmp_path / ("h" * 60) / ("o" * 60)
    long_home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(long_home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("PYTRITON_HOME", raising=False)
    private_tmp = Path(tempfile.mkdtemp(prefix="t"))  # short, and ours alone (other deployments may run beside)
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    try:
        with Deployment(DeploymentSettings(checkpoint=demo_checkpoint, max_batch_size=2)) as deployment:
            workspaces = set(private_tmp.glob("nemo-triton-*"))
            assert len(workspaces) == 1, workspaces
            reply = requests.post(f"{deployment.url}/v1/completions",
                                  json={"prompt": "10+10=", "max_tokens": 3, "stop": ";"}, timeout=60)
            assert reply.json()["choices"][0]["text"].isdigit()
        assert not any(path.exists() for path in workspaces)
    finally:
        shutil.rmtree(private_tmp, ignore_errors=True)


def test_readiness_line_is_found_after_a_fragment_of_tritons_log():
    """Seen in a real run: tritonserver shares stdout and split its own line around ours."""
    from pytest_nemo_eval.serving.deploy_cli import parse_ready_line

    line = ("I1123 16:59:55.309682 24377 model_lifecycle.nemo-eval deploy: ready at "
            "http://127.0.0.1:38771 (model nemo-demo (v2))\n")
    assert parse_ready_line(line) == ("http://127.0.0.1:38771", "nemo-demo (v2)")
    assert parse_ready_line('cc:839] "successfully loaded \'nemo_generate\'"\n') is None
