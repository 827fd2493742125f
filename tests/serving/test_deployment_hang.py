"""A deployment that is alive but silent (SIGSTOP of `nemo-eval deploy` while a harness runs) is noticed by the
watch's probe (runner/deployment_watch.py), killed and treated as dead: here the redeploy fails too (its weights
are gone), so every benchmark errors with a `Diagnosis:` naming the hang, within a minute of the stop, and
nothing is left running (a stopped process outlives SIGTERM: it is SIGKILLed).

An inner pytest run deploys the demo through the plugin (PyTriton)."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import time

import pytest

from pytest_nemo_eval.runner import deployment_watch
from tests.plugin.inner_run import junit_cases
from tests.serving.test_deployment_death import _events, _left_running, _run_and_kill_the_deployment

DIAGNOSED_WITHIN_S = 60.0  # issue 26: SIGSTOP of the server ends in a diagnosis within 60 s


def test_a_stopped_server_is_diagnosed_and_every_benchmark_errors_within_a_minute(pytester, demo_checkpoint):
    checkpoint = pytester.path / "ckpt"
    shutil.copytree(demo_checkpoint, checkpoint)
    # the redeploy then fails on load: the run must end, not wait
    returncode, output, stopped, _, seen, lines, _ = _run_and_kill_the_deployment(
        pytester.path, str(checkpoint), before_kill=lambda: shutil.rmtree(checkpoint / "weights"), sig=signal.SIGSTOP)
    assert returncode == 1, output
    events = _events(pytester.path)
    assert [e["event"] for e in events] == ["died", "lost"], events
    assert events[0]["hung"] and events[0]["exit_status"] == -signal.SIGKILL
    cases = {name: props for name, (_, props) in junit_cases(pytester.path / "junit.xml").items()}
    assert {p["nemo.status"] for p in cases.values()} == {"error"} and len(cases) == 3, cases
    for props in cases.values():
        assert props["nemo.error"].startswith("Diagnosis: the model deployment was lost: `nemo-eval deploy` (pid ")
        assert "stopped answering during the run" in props["nemo.error"]
    diagnosed = events[0]["time"] - stopped
    first_error = min(at for line, at in lines.items() if "s.yaml::" in line and "FAILED" in line) - stopped
    print(f"SIGSTOP -> hang diagnosed after {diagnosed:.1f} s, first benchmark errored after {first_error:.1f} s "
          f"(probe every {deployment_watch.PROBE_EVERY_S:g} s, {deployment_watch.HUNG_AFTER} misses of "
          f"{deployment_watch.PROBE_DEADLINE_S:g} s)")
    # the watchdog's own promise is the diagnosis; the first error also waits for the failed redeploy, whose
    # start-up time is the machine's load (53 s measured at load 10 on 2 cores), so it gets twice the budget
    assert diagnosed < DIAGNOSED_WITHIN_S and first_error < 2 * DIAGNOSED_WITHIN_S, (diagnosed, first_error)
    assert not _left_running(seen), [p.cmdline() for p in _left_running(seen)]


class _SilentDeployment:
    """A deployment whose process (a real `sleep`) lives while its port accepts connections and never answers
    (a listening socket nobody reads: what a stopped server looks like from outside). The process and the
    socket are real; the model is not needed to be silent."""

    def __init__(self) -> None:
        import socket

        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.model_id = "silent"
        self.log_path = "deploy.log"
        self.process = subprocess.Popen(["sleep", "300"], start_new_session=True)

    def log_tail(self) -> str:
        return "serving\n"


def test_the_watch_kills_a_silent_deployment_and_declares_it_lost(tmp_path, monkeypatch):
    """The probe's logic alone, in a second: silent twice in a row -> killed, `died` (hung), redeploy, `lost`."""
    monkeypatch.setattr(deployment_watch, "PROBE_EVERY_S", 0.2)
    monkeypatch.setattr(deployment_watch, "PROBE_DEADLINE_S", 0.5)
    monkeypatch.setattr(deployment_watch, "POLL_S", 0.05)
    silent = _SilentDeployment()
    lines: list[str] = []

    def redeploy():
        raise RuntimeError("weights gone")

    watch = deployment_watch.DeploymentWatch(silent, tmp_path, redeploy, progress=lines.append).start()
    try:
        deadline = time.monotonic() + 30
        while not deployment_watch.DeploymentEvents(tmp_path).lost() and time.monotonic() < deadline:
            time.sleep(0.05)
        events = deployment_watch.DeploymentEvents(tmp_path).read()
        assert [e["event"] for e in events] == ["died", "lost"], (events, lines)
        assert events[0]["hung"] and "2 1-token generations in a row got no answer within 0.5 s" in events[0]["message"]
        assert events[1]["message"].startswith("Diagnosis: the model deployment was lost: `nemo-eval deploy` (pid ")
        assert "weights gone" in events[1]["message"]
        assert silent.process.wait(5) == -signal.SIGKILL
    finally:
        watch.stop()
        silent.listener.close()
        if silent.process.poll() is None:
            silent.process.kill()


@contextlib.contextmanager
def _watched_front(app, tmp_path, redeploy):
    """A deployment whose process is alive and whose port is served by `app` (a WSGI app standing for the HTTP
    front), watched by a DeploymentWatch; everything ends with the block."""
    from pytest_nemo_eval.adapters.wsgi_thread import ServerThread

    server = ServerThread(app, host="127.0.0.1", port=0, threads=4, name="watched-front")
    server.start()
    deployment = _SilentDeployment()
    deployment.url = server.url
    watch = deployment_watch.DeploymentWatch(deployment, tmp_path, redeploy, progress=print).start()
    try:
        yield deployment
    finally:
        watch.stop()
        server.stop()
        deployment.listener.close()
        if deployment.process.poll() is None:
            deployment.process.kill()


def test_the_watch_leaves_an_answering_deployment_alone(tmp_path, monkeypatch):
    """Any HTTP answer is alive, an error status too (only silence is a hang)."""
    monkeypatch.setattr(deployment_watch, "PROBE_EVERY_S", 0.1)
    monkeypatch.setattr(deployment_watch, "PROBE_DEADLINE_S", 0.5)
    monkeypatch.setattr(deployment_watch, "POLL_S", 0.05)
    probes: list[str] = []

    def app(environ, start_response):
        probes.append(environ["PATH_INFO"])
        start_response("503 Service Unavailable", [("Content-Type", "application/json")])
        return [b'{"error": {"message": "busy"}}']

    with _watched_front(app, tmp_path, lambda: None) as answering:
        time.sleep(2.0)
        assert len(probes) >= 5 and set(probes) == {"/v1/completions"}
        assert deployment_watch.DeploymentEvents(tmp_path).read() == [] and answering.process.poll() is None


@pytest.mark.parametrize("engine", ["working", "stuck"])
def test_a_probe_stuck_in_a_busy_queue_is_forgiven_while_the_engine_works(tmp_path, monkeypatch, engine):
    """A saturated server holds the probe past its deadline, but its front answers /v1/health and the engine's
    counters move: busy, left alone. The same front with counters that never move (a deadlocked engine behind a
    live HTTP thread) is hung."""
    monkeypatch.setattr(deployment_watch, "PROBE_EVERY_S", 0.1)
    monkeypatch.setattr(deployment_watch, "PROBE_DEADLINE_S", 0.3)
    monkeypatch.setattr(deployment_watch, "HEALTH_DEADLINE_S", 0.5)
    monkeypatch.setattr(deployment_watch, "POLL_S", 0.05)
    steps = [0]

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/v1/health":
            steps[0] += engine == "working"
            body = json.dumps({"status": "ok", "replicas": {"r1": {"engine": {"decode_steps": steps[0], "prefills": 1}}}})
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body.encode()]
        time.sleep(1.0)  # the probe waits behind a full queue, past its deadline
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    def redeploy():
        raise RuntimeError("no")

    with _watched_front(app, tmp_path, redeploy) as busy:
        time.sleep(4.0)
        events = deployment_watch.DeploymentEvents(tmp_path).read()
        if engine == "working":
            assert events == [] and busy.process.poll() is None, events
        else:
            assert events and events[0]["event"] == "died" and events[0]["hung"], events
