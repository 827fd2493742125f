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

Reported: requests/s, client-side p50/p99 latency, and added p50/p99 over `direct`
at the same concurrency. Every proxy runs in its own process, as in real use.
Run: python benchmarks/bench_proxy.py [--requests N] [--skip-nemo]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_nemo_eval.adapters import AdapterConfig, CacheConfig, LoggingConfig, RetryConfig  # noqa: E402
from pytest_nemo_eval.adapters.process import ProxyProcess  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_proxy.json"
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

def run_load(url: str, concurrency: int, total: int, prompt_prefix: str) -> dict:
    """`total` POSTs of distinct prompts split over `concurrency` keep-alive connections."""
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
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 3),
    }


# --- the servers -------------------------------------------------------------------------------------------

def start_upstream() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_nemo_eval.adapters.scripted_upstream", "--threads", "32"],
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

def measure(name: str, url: str, args, results: list[dict], prefix: str | None = None) -> None:
    """Warm up, then concurrency 1 and 16. `prefix` reuses the prompts of an earlier run (cache hits)."""
    run_load(url, 4, 40, f"warmup-{name}")
    for concurrency, total in ((1, args.requests // 2), (16, args.requests)):
        row = run_load(url, concurrency, total, prefix or f"{name}-c{concurrency}")
        row.update(target=name, concurrency=concurrency)
        results.append(row)
        print(f"  {name:<11} c={concurrency:<3} {row['rps']:>8.1f} req/s  p50 {row['p50_ms']:.3f} ms  "
              f"p99 {row['p99_ms']:.3f} ms  errors {row['errors']}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2400, help="requests per target at concurrency 16 (half at 1)")
    parser.add_argument("--skip-nemo", action="store_true", help="do not install/measure NeMo Evaluator")
    args = parser.parse_args()

    results: list[dict] = []
    nemo_note = "skipped (--skip-nemo)"
    upstream, upstream_url = start_upstream()
    work = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    try:
        measure("direct", upstream_url, args, results)
        with ProxyProcess(upstream_url, AdapterConfig(), log_dir=work / "empty") as proxy:
            measure("ours-empty", proxy.url, args, results)
        with ProxyProcess(upstream_url, OURS_FULL, cache_path=work / "ours.sqlite", log_dir=work / "ours") as proxy:
            measure("ours-full", proxy.url, args, results)
            for concurrency in (1, 16):  # the same prompts again: all hits
                row = run_load(proxy.url, concurrency, args.requests // (2 if concurrency == 1 else 1), f"ours-full-c{concurrency}")
                row.update(target="ours-hit", concurrency=concurrency)
                results.append(row)
                print(f"  ours-hit    c={concurrency:<3} {row['rps']:>8.1f} req/s  p50 {row['p50_ms']:.3f} ms", flush=True)
        if not args.skip_nemo:
            python, version = ensure_nemo_evaluator()
            if python is None:
                nemo_note = version
                print(f"  NeMo Evaluator not measured: {version}")
            else:
                nemo_note = f"nemo-evaluator {version} from PyPI in {NEMO_VENV.relative_to(ROOT)}"
                (work / "nemo").mkdir()
                process, nemo_url = start_nemo(python, upstream_url, work / "nemo")
                try:
                    measure("nemo-full", nemo_url, args, results)
                    for concurrency in (1, 16):
                        row = run_load(nemo_url, concurrency, args.requests // (2 if concurrency == 1 else 1), f"nemo-full-c{concurrency}")
                        row.update(target="nemo-hit", concurrency=concurrency)
                        results.append(row)
                        print(f"  nemo-hit    c={concurrency:<3} {row['rps']:>8.1f} req/s  p50 {row['p50_ms']:.3f} ms", flush=True)
                finally:
                    stop(process)
    finally:
        stop(upstream)

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

    print()
    print(f"{'target':<12}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}{'errors':>8}")
    for row in results:
        print(f"{row['target']:<12}{row['concurrency']:>5}{row['rps']:>10.1f}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
              f"{row['added_p50_ms']:>9.3f}{row['added_p99_ms']:>9.3f}{row['errors']:>8}")
    for name, value in ratios.items():
        print(f"{name}: {value}x")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "bench_proxy",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "setup": "upstream, proxy and client each in their own process on loopback; http.client keep-alive client",
        "nemo_evaluator": nemo_note,
        "nemo_chain": "request_logging, caching (reuse), endpoint, response_logging; it has no retry interceptor",
        "ours_full_chain": "request_logging, response_logging, cache (SQLite, reuse), retry (3)",
        "results": results,
        "ratios": ratios,
    }, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
