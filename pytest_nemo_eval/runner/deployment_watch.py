"""A deployment that dies mid-run is noticed at once: redeployed once, or every benchmark left errors in seconds.

The controller's `DeploymentWatch` polls its `nemo-eval deploy` process (either serving
backend). When it exits, the watch writes `died` (exit status, the deploy.log tail)
to `<output_dir>/deployment-events.jsonl` and redeploys once on the same port, so the
proxy's upstream URL stays valid: then `redeployed`. If that fails too: `lost`, and a
tombstone server takes the port and answers every request with an OpenAI-shaped 400
naming the death, so harnesses still running stop within seconds instead of retrying
a dead upstream for minutes (a 400 is not retried by the proxy).

Benchmarks read the events file (the controller's and every xdist worker's, one
file): `run_watched` errors a benchmark at once when the deployment is lost, and
re-runs, once, a benchmark that was running when the deployment died and was
redeployed.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

from pytest_nemo_eval.runner.target_errors import TargetUnavailable

EVENTS_FILE = "deployment-events.jsonl"
POLL_S = 0.5
SETTLE_TIMEOUT_S = 1800.0  # a redeploy loads the model again: bounded by the startup timeout in practice
T = TypeVar("T")


class DeploymentLost(TargetUnavailable):
    """The deployment died and could not be brought back; the message names the exit status and log tail."""


class DeploymentEvents:
    """The events file of one run's output directory."""

    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / EVENTS_FILE

    def write(self, event: str, **fields) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")

    def read(self) -> list[dict]:
        try:
            return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]
        except FileNotFoundError:
            return []

    def lost(self) -> str | None:
        return next((e["message"] for e in self.read() if e["event"] == "lost"), None)

    def died_since(self, began: float) -> bool:
        return any(e["event"] == "died" and e["time"] >= began for e in self.read())

    def settling(self) -> bool:
        """A death without its redeploy/lost answer yet."""
        events = self.read()
        return bool(events) and events[-1]["event"] == "died"

    def wait_settled(self, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Until the last death is answered; DeploymentLost when it was lost."""
        deadline = time.monotonic() + timeout_s
        while self.settling() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        lost = self.lost()
        if lost:
            raise DeploymentLost(lost)


def run_watched(output_dir: str | Path, run: Callable[[], T]) -> T:
    """run() unless the deployment is lost; again, once, when the deployment died while it ran and came back."""
    events = DeploymentEvents(Path(output_dir))
    events.wait_settled()
    began = time.time()
    try:
        result = run()
    except Exception:
        if not events.died_since(began):
            raise
        events.wait_settled()  # raises DeploymentLost: the benchmark errors naming the death, not the symptom
        return run()
    if events.died_since(began):  # finished, but partly against a dead server: its answers cannot be trusted
        events.wait_settled()
        return run()
    return result


class DeploymentWatch:
    """Polls the deployment's process; on its death redeploys once through `redeploy()` (which returns the new
    process holder) or declares it lost."""

    def __init__(self, deployment, output_dir: Path, redeploy: Callable[[], object], progress=print) -> None:
        self.deployment = deployment
        self.events = DeploymentEvents(output_dir)
        self.redeploy = redeploy
        self.progress = progress
        self.redeployed = 0
        self._stop = threading.Event()
        self._tombstone = None
        self._thread = threading.Thread(target=self._watch, name="nemo-eval-deploy-watch", daemon=True)

    def start(self) -> "DeploymentWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(10)
        tombstone, self._tombstone = self._tombstone, None
        if tombstone is not None:
            tombstone.stop()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            process = getattr(self.deployment, "process", None)
            status = process.poll() if process is not None else None
            if status is None:
                continue
            if self._stop.is_set():  # stopped by us meanwhile
                return
            self._died(status)
            return

    def _died(self, status: int) -> None:
        tail = self.deployment.log_tail().rstrip()[-3000:] or "(no output)"
        log = self.deployment.log_path
        what = f"`nemo-eval deploy` (pid {self.deployment.process.pid if self.deployment.process else '?'}) " \
               f"exited with status {status} during the run"
        self.events.write("died", exit_status=status, log_tail=tail)
        self.progress(f"[nemo-eval] the deployment died ({what}); redeploying once ...")
        try:
            self.deployment = self.redeploy()
        except Exception as exc:  # noqa: BLE001 - any failure of the redeploy means: lost
            message = (f"The model deployment was lost: {what}, and redeploying it failed ({exc}). "
                       f"Log {log}, last lines:\n{tail}")
            self.events.write("lost", message=message, exit_status=status)
            self.progress(f"[nemo-eval] {message}")
            self._bury(message)
            return
        self.redeployed += 1
        self.events.write("redeployed", url=self.deployment.url)
        self.progress(f"[nemo-eval] redeployed at {self.deployment.url}; benchmarks that were running run again")

    def _bury(self, message: str) -> None:
        """Answer the dead upstream's port with a 400 naming the death: running harnesses stop at once."""
        from urllib.parse import urlsplit

        from pytest_nemo_eval.adapters.wsgi_thread import ServerThread

        address = urlsplit(self.deployment.url)
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                     "code": "deployment_lost"}}).encode()

        def app(environ, start_response):
            start_response("400 Bad Request", [("Content-Type", "application/json"),
                                               ("Content-Length", str(len(body)))])
            return [body]

        try:
            self._tombstone = ServerThread(app, host=address.hostname, port=address.port, threads=4,
                                           name="nemo-eval-tombstone")
            self._tombstone.start()
        except OSError:  # the port was taken meanwhile: the proxy's retries end the harnesses, later
            self._tombstone = None
