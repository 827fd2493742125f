"""A deployment that dies mid-run is noticed at once: redeployed once, or every benchmark left errors in seconds.

The controller's `DeploymentWatch` polls its `nemo-eval deploy` process (either serving
backend). When it exits, the watch writes `died` (exit status, the deploy.log tail)
to `<output_dir>/deployment-events.jsonl` and redeploys once on the same port, so the
proxy's upstream URL stays valid: then `redeployed`. If that fails too: `lost`, and a
tombstone server takes the port and answers every request with an OpenAI-shaped 400
naming the death, so harnesses still running stop within seconds instead of retrying
a dead upstream for minutes (a 400 is not retried by the proxy).

A deployment whose process is alive but no longer answers (stopped, deadlocked, stuck in a collective) is
treated like a dead one: every PROBE_EVERY_S the watch asks it for a 1-token generation straight at its port
(no proxy, no cache), and when HUNG_AFTER probes in a row get no answer within PROBE_DEADLINE_S it kills the
process group and goes down the same path (`died` with `hung: true`, redeploy once, else `lost`). Any HTTP
answer, even an error status, counts as alive: only silence is a hang. A probe waits behind the requests
already decoding, so the deadline is generous; and a probe that times out is forgiven when the server's
`/v1/health` answers within HEALTH_DEADLINE_S and its engines made progress since the last look (decode steps
or prefills went up): a saturated server is busy, not hung (the CI rehearsal under load 18 killed a healthy
demo deployment whose queue held the probe past 15 s twice). SIGSTOP of the server is diagnosed within
PROBE_EVERY_S + HUNG_AFTER * (PROBE_DEADLINE_S + HEALTH_DEADLINE_S) (45 s).

Benchmarks read the events file (the controller's and every xdist worker's, one
file): `run_watched` errors a benchmark at once when the deployment is lost, and
re-runs, once, a benchmark that was running when the deployment died and was
redeployed.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

from pytest_nemo_eval.runner.target_errors import TargetUnavailable

EVENTS_FILE = "deployment-events.jsonl"
POLL_S = 0.5
PROBE_EVERY_S = 5.0
PROBE_DEADLINE_S = 15.0
HUNG_AFTER = 2  # probes in a row without an answer
HEALTH_DEADLINE_S = 5.0  # after a silent probe: does /v1/health answer, with the engines' counters moving?
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


def _counted(node: object, names: tuple[str, ...]) -> int:
    """The sum of every integer field called one of `names`, at any depth of a JSON document."""
    if isinstance(node, dict):
        return sum(value if key in names and isinstance(value, int) else _counted(value, names)
                   for key, value in node.items())
    if isinstance(node, list):
        return sum(_counted(value, names) for value in node)
    return 0


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
        misses, next_probe = 0, time.monotonic() + PROBE_EVERY_S
        progress: int | None = None  # the engines' counters at the last silent probe
        while not self._stop.wait(POLL_S):
            process = getattr(self.deployment, "process", None)
            status = process.poll() if process is not None else None
            if status is None:
                if process is None or time.monotonic() < next_probe:
                    continue
                if self._answers():
                    misses = 0
                else:
                    before, progress = progress, self._progress()
                    busy = progress is not None and before is not None and progress > before
                    misses = 0 if busy else misses + 1
                next_probe = time.monotonic() + (0 if misses else PROBE_EVERY_S)  # a miss: probe again at once
                if misses < HUNG_AFTER or self._stop.is_set() or process.poll() is not None:
                    continue
                self._hung(process)
                return
            if self._stop.is_set():  # stopped by us meanwhile
                return
            self._died(status)
            return

    def _answers(self) -> bool:
        """Whether the deployment answers a 1-token generation within PROBE_DEADLINE_S (any HTTP status)."""
        import requests

        try:
            requests.post(f"{self.deployment.url.rstrip('/')}/v1/completions", timeout=PROBE_DEADLINE_S,
                          json={"model": self.deployment.model_id, "prompt": "1", "max_tokens": 1,
                                "temperature": 0})
        except requests.RequestException:
            return False
        return True

    def _progress(self) -> int | None:
        """The engines' work so far (decode steps + prefills, summed over every engine `/v1/health` reports, Ray
        replicas included); None when the front does not answer within HEALTH_DEADLINE_S."""
        import requests

        try:
            health = requests.get(f"{self.deployment.url.rstrip('/')}/v1/health", timeout=HEALTH_DEADLINE_S).json()
        except (requests.RequestException, ValueError):
            return None
        return _counted(health, ("decode_steps", "prefills"))

    def _hung(self, process) -> None:
        """Alive but silent: end its process group (SIGKILL reaches a stopped process), then as a death."""
        from pytest_nemo_eval.processes import kill_process_group

        waited = HUNG_AFTER * PROBE_DEADLINE_S
        kill_process_group(process, grace_s=2.0, first_signal=signal.SIGKILL)
        self._died(process.poll(), hung=(
            f"`nemo-eval deploy` (pid {process.pid}) stopped answering during the run: its process was alive, "
            f"but {HUNG_AFTER} 1-token generations in a row got no answer within {PROBE_DEADLINE_S:g} s each "
            f"({waited:g} s; stopped, deadlocked or stuck); it was killed"))

    def _died(self, status: int | None, hung: str | None = None) -> None:
        tail = self.deployment.log_tail().rstrip()[-3000:] or "(no output)"
        log = self.deployment.log_path
        what = hung or (f"`nemo-eval deploy` (pid {self.deployment.process.pid if self.deployment.process else '?'}) "
                        f"exited with status {status} during the run")
        self.events.write("died", exit_status=status, log_tail=tail, **({"hung": True, "message": hung} if hung
                                                                        else {}))
        self.progress(f"[nemo-eval] the deployment {'hung' if hung else 'died'} ({what}); redeploying once ...")
        try:
            self.deployment = self.redeploy()
        except Exception as exc:  # noqa: BLE001 - any failure of the redeploy means: lost
            message = (f"Diagnosis: the model deployment was lost: {what}, and redeploying it failed ({exc}). "
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
