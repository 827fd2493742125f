"""Benchmark: what the interceptor proxy costs, next to NeMo Evaluator's adapter server.

One run, one fast local upstream (the scripted upstream, its own process), one
client (keep-alive `http.client` connections, one per client thread), and these
targets side by side, at concurrency 1 and 16:

  direct         client -> upstream
  ours-empty     client -> our proxy (stats only) -> upstream
  ours-full      client -> our proxy (request+response logging, SQLite cache, retries) -> upstream
                 (unique prompts: every request is a cache miss that is stored)
  ours-hit       the same prompts again: every request a cache hit
  nemo-full      client -> NeMo Evaluator's AdapterServer (request+response logging,
                 caching, endpoint) -> upstream; installed from PyPI into
                 benchmarks/.venv-nemo-evaluator (created here if missing)
  nemo-hit       the same prompts again through NeMo's cache

Reported: requests/s, client-side p50/p99 latency, added p50/p99 over `direct`
at the same concurrency, and the server's CPU time per request (psutil, user+sys
of the proxy process) — the figure least disturbed by other work on a shared
machine. Targets are measured in interleaved rounds (every target once per
round, in rotating order), so background load hits them all alike. Every proxy
runs in its own process, as in real use.
Run: python benchmarks/bench_proxy.py [--requests N] [--rounds R] [--skip-nemo] [--quick]
     (--quick, the CI check: 64 requests in 1 round, NeMo Evaluator skipped)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import results_path  # noqa: E402
from pytest_nemo_eval.adapters import AdapterConfig, CacheConfig, LoggingConfig, RetryConfig  # noqa: E402
from pytest_nemo_eval.adapters.process import ProxyProcess  # noqa: E402

RESULTS = results_path("bench_proxy.json")
NEMO_VENV = ROOT / "benchmarks" / ".venv-nemo-evaluator"
NEMO_PACKAGE = "nemo-evaluator"

# NeMo Evaluator's server, started the way its own AdapterServerProcess does (AdapterServer(...).run()),
# with the interceptors named in its docs. Run by the venv's interpreter; argv: upstream endpoint, port, dir.
NEMO_LAUNCHER = """
import sys
from nemo_evaluator.adapters.adapter_config import AdapterConfig, InterceptorConfig
from nemo_evaluator.adapters.server import AdapterServer
api_url, port, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = AdapterConfig(interceptors=[
    InterceptorConfig(name="request_logging", config={"max_requests": None}),
    InterceptorConfig(name="caching", config={"cache_dir": work + "/cache", "reuse_cached_responses": True}),
    InterceptorConfig(name="endpoint"),
    InterceptorConfig(name="response_logging", config={"max_responses": None}),
])
AdapterServer(api_url=api_url, output_dir=work, adapter_config=config, port=port).run()
"""

OURS_FULL = AdapterConfig(
    request_logging=LoggingConfig(),
    response_logging=LoggingConfig(),
    cache=CacheConfig(mode="reuse"),
    retry=RetryConfig(max_retries=3),
)


# --- load generation ---------------------------------------------------------------------------------------

def run_load(url: str, concurrency: int, total: int, prompt_prefix: str) -> tuple[list[float], list[str], float]:
    """`total` POSTs of distinct prompts over `concurrency` keep-alive connections -> (latencies ms, errors, seconds)."""
    parts = urlsplit(url)
    path = (parts.path.rstrip("/") or "") + "/v1/completions"
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = total // concurrency

    def client(client_id: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        mine: list[float] = []
        for i in range(per_client):
            body = json.dumps({"model": "m", "prompt": f"{prompt_prefix} {client_id} {i}", "max_tokens": 8}).encode()
            start = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            reply = conn.getresponse()
            data = reply.read()
            mine.append((time.perf_counter() - start) * 1000)
            if reply.status != 200 or b"echo:" not in data:
                with lock:
                    errors.append(f"{reply.status}: {data[:200]!r}")
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


class Target:
    """One thing to measure: its URL, the process whose CPU we count, and the samples so far."""

    def __init__(self, name: str, url: str, pid: int, replay_of: "Target | None" = None) -> None:
        self.name, self.url, self.replay_of = name, url, replay_of
        self.process = psutil.Process(pid)
        self.samples: dict[int, dict] = {}

    def cpu_s(self) -> float:
        """User+sys CPU seconds of the server process and its children."""
        procs = [self.process, *self.process.children(recursive=True)]
        return sum(p.cpu_times().user + p.cpu_times().system for p in procs)

    def burst(self, concurrency: int, count: int, round_no: int) -> None:
        source = self.replay_of.name if self.replay_of else self.name
        cpu_before = self.cpu_s()
        latencies, errors, seconds = run_load(self.url, concurrency, count, f"{source}-c{concurrency}-r{round_no}")
        cpu = self.cpu_s() - cpu_before
        acc = self.samples.setdefault(concurrency, {"latencies": [], "errors": [], "seconds": 0.0, "cpu_s": 0.0})
        acc["latencies"] += latencies
        acc["errors"] += errors
        acc["seconds"] += seconds
        acc["cpu_s"] += cpu

    def row(self, concurrency: int) -> dict:
        acc = self.samples[concurrency]
        lat = sorted(acc["latencies"])
        return {
            "target": self.name,
            "concurrency": concurrency,
            "requests": len(lat),
            "errors": len(acc["errors"]),
            "first_error": acc["errors"][0] if acc["errors"] else None,
            "rps": round(len(lat) / acc["seconds"], 1),
            "p50_ms": round(statistics.median(lat), 3),
            "p99_ms": round(lat[max(0, int(len(lat) * 0.99) - 1)], 3),
            "server_cpu_us_per_request": round(acc["cpu_s"] / len(lat) * 1e6, 1),
        }


# --- the servers -------------------------------------------------------------------------------------------

def start_upstream() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "adapters" / "scripted_upstream.py"), "--threads", "32"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
    )
    line = process.stdout.readline()
    if "listening on" not in line:
        raise RuntimeError(f"scripted upstream did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1].strip()


def ensure_nemo_evaluator() -> tuple[Path | None, str]:
    """The venv's python and the installed version, or (None, why not)."""
    python = NEMO_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(NEMO_VENV)], check=True)
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('nemo-evaluator'))"]
    found = subprocess.run(probe, capture_output=True, text=True)
    if found.returncode != 0:
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", NEMO_PACKAGE], capture_output=True, text=True)
        if install.returncode != 0:
            return None, f"pip install {NEMO_PACKAGE} failed: {install.stderr.strip()[-800:]}"
        found = subprocess.run(probe, capture_output=True, text=True)
    return python, found.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_nemo(python: Path, upstream_url: str, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(work / "nemo-adapter-server.log", "w")
    env = {**os.environ, "ADAPTER_HOST": "127.0.0.1"}
    process = subprocess.Popen([str(python), "-c", NEMO_LAUNCHER, f"{upstream_url}/v1/completions", str(port), str(work)],
                               stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"NeMo Evaluator's adapter server exited: {(work / 'nemo-adapter-server.log').read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"http://127.0.0.1:{port}"
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("NeMo Evaluator's adapter server did not open its port within 60 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


# --- the run -----------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2400, help="requests per target at concurrency 16 (half at 1)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds the requests are split into")
    parser.add_argument("--skip-nemo", action="store_true", help="do not install/measure NeMo Evaluator")
    parser.add_argument("--quick", action="store_true", help="CI smoke: 64 requests, 1 round, --skip-nemo")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds, args.skip_nemo = 64, 1, True

    nemo_note = "skipped (--skip-nemo)"
    nemo_python = None
    if not args.skip_nemo:
        nemo_python, version = ensure_nemo_evaluator()
        nemo_note = f"nemo-evaluator {version} from PyPI in {NEMO_VENV.relative_to(ROOT)}" if nemo_python else version
        if nemo_python is None:
            print(f"NeMo Evaluator not measured: {version}")

    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    load_at_start = os.getloadavg()[0]
    upstream, upstream_url = start_upstream()
    children: list = []
    try:
        empty = ProxyProcess(upstream_url, AdapterConfig(), log_dir=work / "empty").start()
        children.append(empty)
        full = ProxyProcess(upstream_url, OURS_FULL, cache_path=work / "ours.sqlite", log_dir=work / "ours").start()
        children.append(full)
        targets = [Target("direct", upstream_url, upstream.pid), Target("ours-empty", empty.url, empty.process.pid)]
        ours_full = Target("ours-full", full.url, full.process.pid)
        targets += [ours_full, Target("ours-hit", full.url, full.process.pid, replay_of=ours_full)]
        if nemo_python is not None:
            (work / "nemo").mkdir()
            nemo_process, nemo_url = start_nemo(nemo_python, upstream_url, work / "nemo")
            children.append(nemo_process)
            nemo_full = Target("nemo-full", nemo_url, nemo_process.pid)
            targets += [nemo_full, Target("nemo-hit", nemo_url, nemo_process.pid, replay_of=nemo_full)]
        for target in targets:
            run_load(target.url, 4, 40, f"warmup-{target.name}")
        for round_no in range(args.rounds):
            for concurrency, total in ((1, args.requests // 2), (16, args.requests)):
                # rotate the order each round; a "hit" target always right after the run it replays
                firsts = [t for t in targets if t.replay_of is None]
                shift = round_no % len(firsts)
                for first in firsts[shift:] + firsts[:shift]:
                    for target in [first] + [t for t in targets if t.replay_of is first]:
                        target.burst(concurrency, total // args.rounds, round_no)
            print(f"  round {round_no + 1}/{args.rounds} done", flush=True)
    finally:
        for child in children:
            child.stop() if isinstance(child, ProxyProcess) else stop(child)
        stop(upstream)

    results = [target.row(c) for c in (1, 16) for target in targets]
    direct = {r["concurrency"]: r for r in results if r["target"] == "direct"}
    for row in results:
        base = direct[row["concurrency"]]
        row["added_p50_ms"] = round(row["p50_ms"] - base["p50_ms"], 3)
        row["added_p99_ms"] = round(row["p99_ms"] - base["p99_ms"], 3)
    by = {(r["target"], r["concurrency"]): r for r in results}
    ratios = {}
    for ours, theirs in (("ours-full", "nemo-full"), ("ours-hit", "nemo-hit"), ("ours-empty", "nemo-full")):
        if (theirs, 16) in by:
            ratios[f"{ours}/{theirs} rps at c=16"] = round(by[(ours, 16)]["rps"] / by[(theirs, 16)]["rps"], 2)
            ratios[f"{theirs}/{ours} server CPU per request at c=16"] = round(
                by[(theirs, 16)]["server_cpu_us_per_request"] / by[(ours, 16)]["server_cpu_us_per_request"], 2)

    print()
    print(f"{'target':<12}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}"
          f"{'CPU us/req':>11}{'errors':>7}")
    for row in results:
        print(f"{row['target']:<12}{row['concurrency']:>5}{row['rps']:>9.1f}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
              f"{row['added_p50_ms']:>9.3f}{row['added_p99_ms']:>9.3f}{row['server_cpu_us_per_request']:>11.1f}"
              f"{row['errors']:>7}")
    for name, value in ratios.items():
        print(f"{name}: {value}x")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "bench_proxy",
        "quick": args.quick,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1m": {"start": load_at_start, "end": os.getloadavg()[0]}},
        "setup": "upstream, each proxy and the client in their own processes on loopback; http.client keep-alive "
                 f"client; {args.rounds} interleaved rounds",
        "nemo_evaluator": nemo_note,
        "nemo_chain": "request_logging, caching (reuse), endpoint, response_logging; it has no retry interceptor",
        "ours_full_chain": "request_logging, response_logging, cache (SQLite, reuse), retry (3)",
        "results": results,
        "ratios": ratios,
    }, indent=2))
    print(f"wrote {RESULTS}")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
