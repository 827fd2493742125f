"""The serving front's own ceiling (bench_serving.py --standin): a real `nemo-eval deploy` per backend with the
stand-in engine (benchmarks/_standin_engine.py, no CPU), so what is measured is the HTTP front, validation,
the chat template, tokenization, the backend hop and the reply's shaping: nothing of the model.

Per backend (PyTriton; Ray x1, x2), one deployment at a time, every cell of
  {completions, chat} x {non-streamed, streamed} x concurrency {1, 16, 64}
on the short workload (the stand-in answers 4 tokens and the EOS), and chat with 64 tokens (ignore_eos) at
16 clients streamed and not (the streaming-cost ratio). Reported per cell: requests/s, latency p50/p99
added over what the stand-in itself waits (tokens x step delay), and the server's CPU time per request:
psutil user+sys summed over the deployment's whole process tree (the deploy process, tritonserver and its
stub, or the Ray head's processes and replicas), so idle background work of a backend counts too.
The client is keep-alive http.client connections, one per client thread, in this process (it shares the
machine's cores with the server; the machine's load average is recorded beside every table).
Not a bench_ script itself (tests/test_benchmarks_run.py runs those): bench_serving.py imports it.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from pytest_nemo_eval.serving.engine_source import BENCH_ENGINE_ENV
from pytest_nemo_eval.serving.launcher import Deployment, DeploymentSettings

STANDIN = Path(__file__).resolve().parent / "_standin_engine.py"
STEP_ENV = "_NEMO_EVAL_STANDIN_STEP_MS"  # _standin_engine.py's
SHORT = {"max_tokens": 16}
LONG = {"max_tokens": 64, "ignore_eos": True}


def cells(quick: bool) -> list[dict]:
    """The ceiling (stand-in answering at once): (endpoint, stream, concurrency, workload)."""
    out = []
    for endpoint in ("completions", "chat"):
        for stream in (False, True):
            for c in ((16,) if quick else (1, 16, 64)):
                out.append({"endpoint": endpoint, "stream": stream, "concurrency": c, "workload": "short"})
    return out


def stepped_cells() -> list[dict]:
    """With a wall-clock step per token (tokens reach a stream one by one, as from a GPU): the streaming cost
    (chat, 64 tokens, 16 clients, streamed and not) and replica scaling (64 clients, more than one replica's
    slots)."""
    return [{"endpoint": "chat", "stream": s, "concurrency": 16, "workload": "long64"} for s in (False, True)] + [
        {"endpoint": "completions", "stream": False, "concurrency": 64, "workload": "long64"}]


def body_of(cell: dict, i: int) -> bytes:
    sampling = SHORT if cell["workload"] == "short" else LONG
    payload: dict = {"model": "m", **sampling}
    if cell["endpoint"] == "completions":
        payload["prompt"] = f"{i % 100} + {i % 7} ="
    else:
        payload["messages"] = [{"role": "user", "content": f"What is {i % 100} + {i % 7}?"}]
    if cell["stream"]:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return json.dumps(payload).encode()


def run_load(url: str, cell: dict, total: int) -> tuple[list[float], list[str], float, int]:
    """`total` POSTs over `concurrency` keep-alive connections -> (latencies s, errors, wall s, SSE chunks)."""
    parts = urlsplit(url)
    path = "/v1/completions" if cell["endpoint"] == "completions" else "/v1/chat/completions"
    concurrency = cell["concurrency"]
    latencies: list[float] = []
    errors: list[str] = []
    chunks = [0]
    lock = threading.Lock()
    per_client = max(1, total // concurrency)

    def client(client_id: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        mine: list[float] = []
        seen = 0
        for i in range(per_client):
            body = body_of(cell, client_id * per_client + i)
            start = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            reply = conn.getresponse()
            data = reply.read()
            mine.append(time.perf_counter() - start)
            seen += data.count(b"data: {")
            if reply.status != 200 or (cell["stream"] and not data.endswith(b"data: [DONE]\n\n")):
                with lock:
                    errors.append(f"{reply.status}: {data[:200]!r}")
        conn.close()
        with lock:
            latencies.extend(mine)
            chunks[0] += seen

    threads = [threading.Thread(target=client, args=(c,)) for c in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started, chunks[0]


def tree_cpu_s(root: psutil.Process, seen: dict[int, tuple[str, float]]) -> dict[str, float]:
    """User+sys CPU seconds of `root` and every descendant by process name (the deploy process is "front"),
    plus those of processes seen earlier that have exited since (their last reading)."""
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            name = "front" if process.pid == root.pid else process.name()
            seen[process.pid] = (name, times.user + times.system)
        except psutil.Error:
            pass
    by_name: dict[str, float] = {}
    for name, cpu in seen.values():
        by_name[name] = by_name.get(name, 0.0) + cpu
    return by_name


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure_target(name: str, settings: DeploymentSettings, plan: list[dict], requests_per_cell: int,
                   step_ms: float) -> list[dict]:
    rows = []
    with Deployment(settings) as deployment:
        assert deployment.process is not None
        root = psutil.Process(deployment.process.pid)
        seen: dict[int, tuple[str, float]] = {}
        print(f"{name}: up in {deployment.startup_s:.1f} s", flush=True)
        for cell in plan:
            total = max(requests_per_cell, 4 * cell["concurrency"])
            run_load(deployment.url, {**cell}, 2 * cell["concurrency"])  # warm-up: every connection open
            cpu_before = tree_cpu_s(root, seen)
            latencies, errors, wall, chunks = run_load(deployment.url, cell, total)
            cpu_after = tree_cpu_s(root, seen)
            by_process = {name: 1000 * (cpu_after[name] - cpu_before.get(name, 0.0)) / max(1, len(latencies))
                          for name in cpu_after}
            cpu = sum(cpu_after.values()) - sum(cpu_before.values())
            tokens = 5 if cell["workload"] == "short" else 64
            intrinsic = tokens * step_ms / 1000
            row = {"target": name, **cell, "requests": len(latencies), "errors": len(errors),
                   "first_error": errors[0] if errors else None, "wall_s": wall, "rps": len(latencies) / wall,
                   "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
                   "added_p50_ms": 1000 * (percentile(latencies, 0.5) - intrinsic),
                   "added_p99_ms": 1000 * (percentile(latencies, 0.99) - intrinsic),
                   "cpu_ms_per_request": 1000 * cpu / len(latencies),
                   "cpu_ms_per_request_by_process": {k: round(v, 3) for k, v in by_process.items() if v >= 0.005},
                   "chunks_per_request": chunks / len(latencies) if cell["stream"] else None,
                   "loadavg_1m": os.getloadavg()[0]}
            rows.append(row)
            print(f"  {label(row):<28} {row['rps']:8.1f} req/s  added p50 {row['added_p50_ms']:7.2f} ms  "
                  f"p99 {row['added_p99_ms']:7.2f} ms  cpu {row['cpu_ms_per_request']:6.2f} ms/req "
                  f"{row['cpu_ms_per_request_by_process']}"
                  + (f"  errors {len(errors)}: {errors[0]}" if errors else ""), flush=True)
    return rows


def label(row: dict) -> str:
    kind = "chat" if row["endpoint"] == "chat" else "cmpl"
    return f"{kind} {row['workload']} {'stream' if row['stream'] else 'plain'} @{row['concurrency']}"


def run(checkpoint: Path, *, backends: list[str], quick: bool, requests_per_cell: int, step_ms: float,
        batch: int, real_engine: bool = False) -> dict:
    """Every target in `backends` ("pytriton", "ray x1", "ray x2"), one after the other; the table and rows.
    `real_engine`: also chat with 64 tokens at 16 clients, streamed and not, on PyTriton with the demo model
    (its "added" latency is the whole latency)."""
    os.environ[BENCH_ENGINE_ENV] = str(STANDIN)  # inherited by each `nemo-eval deploy` (and Ray's head)
    phases = [(0.0, cells(quick), requests_per_cell)] + ([] if quick else [(step_ms, stepped_cells(), 64)])
    rows: list[dict] = []
    try:
        for name in backends:
            if name == "pytriton":
                settings = DeploymentSettings(checkpoint=checkpoint, max_batch_size=batch)
            else:
                settings = DeploymentSettings(checkpoint=checkpoint, max_batch_size=batch, backend="ray",
                                              replicas=int(name.split("x")[1]), replica_cpus=1)
            for step, plan, count in phases:
                os.environ[STEP_ENV] = str(step)
                for row in measure_target(name, settings, plan, count, step):
                    rows.append({**row, "step_ms": step})
    finally:
        os.environ.pop(BENCH_ENGINE_ENV, None)
        os.environ.pop(STEP_ENV, None)
    if real_engine:  # the streaming cost with the model itself (the demo on this CPU), as the issue measured it
        settings = DeploymentSettings(checkpoint=checkpoint, max_batch_size=batch)
        for row in measure_target("pytriton+demo", settings, stepped_cells()[:2], 48, 0.0):
            rows.append({**row, "step_ms": None})
    print_table(rows)
    return {"step_ms": step_ms, "rows": rows, "ratios": ratios(rows)}


def ratios(rows: list[dict]) -> dict:
    """Streamed over non-streamed CPU per request (chat), per backend and workload at 16 clients."""
    out: dict[str, float] = {}
    by = {(r["target"], r["endpoint"], r["workload"], r["stream"], r["concurrency"]): r for r in rows}
    for (target, endpoint, workload, stream, c), row in by.items():
        plain = by.get((target, endpoint, workload, False, c))
        if stream and plain:
            out[f"{target} {endpoint} {workload} @{c} stream/plain cpu"] = (
                row["cpu_ms_per_request"] / plain["cpu_ms_per_request"])
    return out


def print_table(rows: list[dict]) -> None:
    print(f"\nthe front's ceiling: stand-in engine, load average "
          f"{statistics.mean(r['loadavg_1m'] for r in rows):.2f} (1-min, mean over cells)")
    print(f"{'target':<14}{'step ms':>8} {'cell':<28}{'req/s':>9}{'added p50':>10}{'added p99':>10}{'CPU ms/req':>11}"
          f"{'chunks':>8}{'errors':>7}")
    for r in rows:
        chunks = f"{r['chunks_per_request']:.1f}" if r["chunks_per_request"] is not None else "-"
        step = "model" if r["step_ms"] is None else f"{r['step_ms']:g}"
        print(f"{r['target']:<14}{step:>8} {label(r):<28}{r['rps']:>9.1f}{r['added_p50_ms']:>10.2f}{r['added_p99_ms']:>10.2f}"
              f"{r['cpu_ms_per_request']:>11.2f}{chunks:>8}{r['errors']:>7}")
    for name, value in ratios(rows).items():
        print(f"{name}: {value:.2f}x")
