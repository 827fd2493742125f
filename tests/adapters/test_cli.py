"""`nemo-eval proxy` as users run it: a real child process, one readiness line, Ctrl-C ends it."""

from __future__ import annotations

import signal
import subprocess
import sys

import requests

from pytest_nemo_eval.adapters.cli import READY_PREFIX


def _run(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest_nemo_eval.cli", "proxy", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)


def test_cli_serves_with_a_yaml_config_until_ctrl_c(upstream, tmp_path):
    config = tmp_path / "adapter.yaml"
    config.write_text("system_message: From the CLI.\ncache: reuse\n")
    process = _run("--upstream", upstream.url, "--config", str(config), "--cache", str(tmp_path / "c.sqlite"))
    try:
        line = process.stdout.readline()
        assert line.startswith(READY_PREFIX), line + process.stderr.read()
        url = line[len(READY_PREFIX):].split()[0]
        assert url.startswith("http://127.0.0.1:")  # loopback by default
        reply = requests.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
        assert reply.json()["received"]["messages"][0]["content"] == "From the CLI."
        assert requests.get(f"{url}/_nemo/stats", timeout=10).json()["requests"] == 1
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0


def test_cli_bad_config_exits_2_with_a_message(tmp_path):
    config = tmp_path / "adapter.yaml"
    config.write_text("cache: {mode: reuse, colour: blue}\n")
    process = _run("--upstream", "http://127.0.0.1:9", "--config", str(config))
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2 and out == ""
    assert "Invalid" in err and "cache.colour: Extra inputs are not permitted" in err


def test_cli_wait_upstream_gives_up_with_a_clear_error():
    process = _run("--upstream", "http://127.0.0.1:9", "--wait-upstream", "0.5")
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1 and READY_PREFIX not in out
    assert "did not answer GET /v1/models within 0.5 s" in err


def test_proxy_process_exits_when_its_parent_dies(upstream, tmp_path):
    """A proxy started by ProxyProcess (--exit-with-parent) never outlives a killed parent."""
    import os
    import time

    import psutil

    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pytest_nemo_eval.adapters.process import ProxyProcess\n"
        f"proxy = ProxyProcess({upstream.url!r}).start()\n"
        "print(proxy.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert psutil.pid_exists(child_pid)
    parent.kill()
    parent.wait()
    # The proxy notices its parent's death on its own; a minute guards against a hang on a loaded machine.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and psutil.pid_exists(child_pid) and psutil.Process(child_pid).status() != "zombie":
        time.sleep(0.1)
    gone = not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == "zombie"
    if not gone:
        os.kill(child_pid, 9)
    assert gone
