"""A deployment killed mid-suite (`kill -9` of `nemo-eval deploy` while a harness runs) is noticed at once:
redeployed once and the running benchmark re-run, or — when the redeploy fails too — every remaining
benchmark errors within seconds naming the exit status and the deploy.log tail, with nothing left running.

Inner pytest runs deploy the demo through the plugin: PyTriton, and Ray Serve with its own head (the watch is
the same for either backend; what a killed deploy leaves behind is not).
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.plugin.inner_run import junit_cases, junit_suite_properties

SUITE = """\
defaults: {runtime: local, parallelism: 1, limit_samples: 40}
benchmarks:
  - {name: first, harness: builtin, task: demo_addition, thresholds: {exact_match: {min: 0.5}}}
  - {name: second, harness: builtin, task: demo_reversal, thresholds: {exact_match: {min: 0.2}}}
  - {name: third, harness: builtin, task: demo_addition_mc, thresholds: {acc: {min: 0.4}}}
"""


def _deploy_process(children: list[psutil.Process]) -> psutil.Process | None:
    for proc in children:
        try:
            command = proc.cmdline()
        except psutil.Error:
            continue
        if "deploy" in command and "--settings-json" in command:
            return proc
    return None


def _harness_running(children: list[psutil.Process]) -> bool:
    for proc in children:
        try:
            if "run_eval" in proc.cmdline():
                return True
        except psutil.Error:
            pass
    return False


def _ray_ports(processes) -> tuple[set[int], set[str]]:
    """The ports the Ray processes among `processes` listen on (GCS, raylet, object manager, agents, workers),
    and their names."""
    ports, names = set(), set()
    for proc in processes:
        try:
            if not any(name in proc.name() + " ".join(proc.cmdline()) for name in ("raylet", "gcs_server", "ray::")):
                continue
            names.add(proc.name())
            ports.update(c.laddr.port for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)
        except psutil.Error:
            pass
    return ports, names


def _run_and_kill_the_deployment(workdir: Path, checkpoint: str, before_kill=lambda: None, extra_args=(),
                                 sig: signal.Signals = signal.SIGKILL):
    """Run the suite; once the first harness runs, SIGKILL the deployment (or send it `sig`: SIGSTOP is the hang
    test's). -> (returncode, output, kill time,
    end time, every process the run had, {output line: time.time() it appeared}, Ray ports listening before the
    kill)."""
    (workdir / "s.yaml").write_text(SUITE)
    out = workdir / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "s.yaml", f"--nemo-checkpoint={checkpoint}",
         f"--nemo-output-dir={out}", "--nemo-cache=off", "-rA", "-v", "--junitxml", str(workdir / "junit.xml"),
         *extra_args],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: dict[str, float] = {}

    def read() -> None:
        for line in process.stdout:
            lines.setdefault(line.rstrip("\n"), time.time())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: set[psutil.Process] = set()
    try:
        deadline = time.monotonic() + 600
        while True:
            assert process.poll() is None, "\n".join(lines)
            assert time.monotonic() < deadline, "the first harness never started"
            children = psutil.Process(process.pid).children(recursive=True)
            seen.update(children)
            # the deployment is up (deployments.log has its line: a lazy deployment starts on the first request)
            if _harness_running(children) and _deploy_process(children) and (out / "deployments.log").exists():
                break
            time.sleep(0.1)
        before_kill()
        ports = _ray_ports(psutil.Process(process.pid).children(recursive=True))
        _deploy_process(children).send_signal(sig)
        killed = time.time()
        while process.poll() is None:  # keep collecting: the redeploy's processes must end too
            try:
                seen.update(psutil.Process(process.pid).children(recursive=True))
            except psutil.Error:
                pass
            time.sleep(0.2)
        reader.join(30)
        ended = time.time()
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, "\n".join(lines), killed, ended, seen, lines, ports


def _events(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "out" / "deployment-events.jsonl").read_text().splitlines()]


def _left_running(processes) -> list:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_a_killed_deployment_is_redeployed_once_and_the_running_benchmark_runs_again(pytester, demo_checkpoint):
    code, output, _killed, _ended, seen, _lines, _ports = _run_and_kill_the_deployment(pytester.path, "demo")
    assert code == 0, output
    assert [e["event"] for e in _events(pytester.path)] == ["died", "redeployed"]
    assert _events(pytester.path)[0]["exit_status"] == -signal.SIGKILL
    assert "benchmarks that were running run again" in output
    cases = {name: status for name, (status, _) in junit_cases(pytester.path / "junit.xml").items()}
    assert set(cases.values()) == {"passed"} and len(cases) == 3, cases
    assert junit_suite_properties(pytester.path / "junit.xml")["nemo.deployments"] == "2"
    assert not _left_running(seen), [p.cmdline() for p in _left_running(seen)]


NOTICED_WITHIN_S = 1.0  # the README's "noticed within a second": the watch polls every 0.5 s
# kill -> first errored benchmark (README: "within a minute"): ending what the dead deploy left (SIGTERM, SIGKILL
# after the 30 s stop grace: Ray's orphaned head outlives SIGTERM) and the failed redeploy's start. Measured on Ray's
# own head: 43.5 s, with five other test runs on the 2 cores
FIRST_ERROR_WITHIN_S = 60.0


@pytest.mark.parametrize("backend", ["pytriton", pytest.param("ray", marks=pytest.mark.ray_backend)])
def test_when_the_redeploy_fails_every_remaining_benchmark_errors_within_seconds(pytester, demo_checkpoint, backend):
    if backend == "ray":
        pytest.importorskip("ray.serve", reason="the ray extra is not installed (pip install -e '.[ray]')")
    checkpoint = pytester.path / "ckpt"
    shutil.copytree(demo_checkpoint, checkpoint)

    def break_the_checkpoint():  # the redeploy then fails on load, as after a disk or node loss
        shutil.rmtree(checkpoint / "weights")

    extra = ("--nemo-serving-backend", "ray", "--nemo-replicas", "1") if backend == "ray" else ()
    code, output, killed, ended, seen, lines, ports = _run_and_kill_the_deployment(
        pytester.path, str(checkpoint), break_the_checkpoint, extra)
    assert code == 1, output
    events = _events(pytester.path)
    assert [e["event"] for e in events] == ["died", "lost"]
    cases = {name: props["nemo.status"] for name, (_, props) in junit_cases(pytester.path / "junit.xml").items()}
    assert set(cases.values()) == {"error"} and len(cases) == 3, cases  # the running one and every later one
    assert output.count(f"exited with status {-signal.SIGKILL} during the run") >= len(cases), output
    assert "deploy.log, last lines" in output
    noticed = events[0]["time"] - killed
    first_error = min(at for line, at in lines.items() if "s.yaml::" in line and "FAILED" in line) - killed
    print(f"{backend}: death noticed {noticed:.2f} s after the kill, first benchmark errored after {first_error:.1f} s,"
          f" run ended after {ended - killed:.1f} s")
    assert noticed < NOTICED_WITHIN_S, noticed
    assert first_error < FIRST_ERROR_WITHIN_S, first_error
    assert not _left_running(seen), [p.cmdline() for p in _left_running(seen)]
    if backend == "ray":  # its own head was among them: raylet, GCS and workers
        ports, names = ports
        assert "raylet" in names and "gcs_server" in names, names
        assert ports, "the head listened somewhere"
        assert not [port for port in ports if _port_open(port)], ports


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
