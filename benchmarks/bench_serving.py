"""Benchmark: the serving stack (PyTriton + OpenAI HTTP front) against the engine's ceiling.

One run, the demo checkpoint, measured side by side on two workloads of
held-out addition prompts, greedy:

  short   max_tokens 16; the model answers in ~4 tokens and stops at its end-of-sequence token,
          so per-request costs (HTTP, Triton, prefill) weigh the most
  fixed   max_tokens 64 with ignore_eos, so every request generates exactly 64 tokens
          (the equal-work-per-request load of vLLM-style serving benchmarks)

and, for each, two targets:

  direct        GenerationEngine.generate() in this process, batches of --batch (the ceiling)
  served@C      the same prompts as /v1/completions requests to a real `nemo-eval deploy`
                process, from C concurrent clients (C = 1, 4, 16), one keep-alive session each

  streamed@C    the same requests with stream=true (Server-Sent Events), C = 1, 4, 16

Tokens include the EOS a completion ends on (counted in usage, as vLLM does).
Reported: generated tokens/s, ratio served/direct, client-side p50/p99 latency
per request, time to first token (TTFT: request sent -> first streamed token;
for non-streamed requests it is the whole latency) and inter-token latency
(ITL: gaps between a stream's chunks, one token each), how full the engine's running batch was (mean active rows per
decode step, and prefills) from /v1/health, and the speedup batching gives at
16 clients over 1. Targets run one at a time (the idle deployment stays up
while the direct engine runs), in --rounds interleaved rounds; each ratio is
taken within a round and the median over rounds is reported, because this
shared machine's speed drifts by tens of percent between minutes. The JSON
keeps every round with the machine's description.
Run: python benchmarks/bench_serving.py [--requests N] [--rounds R] [--batch B] [--max-queue-delay-us US] [--quick]
     (--quick, the CI check: the short workload, 16 requests, 1 and 16 clients, 1 round; with --backend ray
     1 replica, the short workload)

The front's own ceiling: python benchmarks/bench_serving.py --standin [--standin-backends pytriton,ray x1,ray x2]
  [--step-ms 10] [--standin-requests 256]: each backend with the stand-in engine (benchmarks/_standin_engine.py,
  no CPU: the model is gone, the HTTP front, tokenization, the backend hop and the shaping remain), completions
  and chat, streamed and not, at 1, 16 and 64 clients: requests/s, added latency p50/p99, server CPU per
  request over the deployment's process tree (by process); then, with a wall-clock step per token, chat with
  64 tokens at 16 clients (streaming's cost) and 64 clients over the slots (replica scaling); and the same
  streaming cells with the demo model on PyTriton. JSON in results/bench_serving_front.json
  (benchmarks/_front_ceiling.py). --quick runs a slice of it too (PyTriton, 16 clients, answering at once).

Backends side by side: python benchmarks/bench_serving.py --backend ray --replicas 1,2
  PyTriton and Ray Serve with 1 and 2 replicas (1 CPU each), served@16 on both workloads, in
  interleaved rounds; ratios to PyTriton within each round, medians reported; JSON in
  results/bench_serving_backends.json. (Decode steps of several replicas run side by side, so
  the "rows/step" of a Ray target is summed over its replicas.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import results_path  # noqa: E402
from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint  # noqa: E402
from pytest_nemo_eval.serving.launcher import Deployment, DeploymentSettings  # noqa: E402

RESULTS = results_path("bench_serving.json")
DATA = ROOT / "pytest_nemo_eval" / "harness" / "builtin" / "data" / "demo_addition.jsonl"
CONCURRENCY = (1, 4, 16)
WORKLOADS = {"short": {"max_tokens": 16, "ignore_eos": False}, "fixed": {"max_tokens": 64, "ignore_eos": True}}


def load_prompts(count: int) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    return [rows[i % len(rows)]["prompt"] for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_direct(engine, prompts: list[str], workload: dict, batch: int) -> dict:
    """The ceiling: the engine generating the whole workload in batches, no server in between."""
    from pytest_nemo_eval.serving.engine import GenerationRequest

    requests_ = [GenerationRequest(prompt_ids=engine.tokenizer.encode(p), **workload) for p in prompts]
    engine.generate(requests_[:batch])  # warm-up
    latencies, tokens = [], 0
    began = time.perf_counter()
    for start in range(0, len(requests_), batch):
        t0 = time.perf_counter()
        results = engine.generate(requests_[start : start + batch])
        latencies += [time.perf_counter() - t0] * len(results)
        tokens += sum(len(r.output_ids) for r in results)
    wall = time.perf_counter() - began
    return {"target": f"direct (batch {batch})", "concurrency": None, "requests": len(prompts), "tokens": tokens,
            "wall_s": wall, "tokens_per_s": tokens / wall,
            "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99)}


def _closed_loop(url: str, prompts: list, concurrency: int, ask):
    """`concurrency` clients send `prompts` back to back after a warm-up that connects every client;
    (outcomes, wall seconds, engine stats before, engine stats after)."""
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(ask, prompts[: 2 * concurrency]))  # warm-up: every client connected
        before = engine_stats(url)
        began = time.perf_counter()
        outcomes = list(pool.map(ask, prompts))
        wall = time.perf_counter() - began
    after = engine_stats(url)
    return outcomes, wall, before, after


def engine_stats(url: str) -> dict:
    """The engine counters of /v1/health: PyTriton's one engine, or the sum over Ray's replicas (they report
    every 0.25 s, so a short wait lets the last requests' counts arrive)."""
    health = requests.get(f"{url}/v1/health", timeout=30).json()
    if "engine" in health:
        return health["engine"]
    time.sleep(0.6)
    replicas = requests.get(f"{url}/v1/health", timeout=30).json()["replicas"].values()
    keys = ("decode_steps", "decoded_rows", "prefills", "prefilled_rows")
    return {key: sum(r["engine"][key] for r in replicas) for key in keys}


def run_served(url: str, prompts: list[str], workload: dict, concurrency: int) -> dict:
    """The same workload as HTTP requests from `concurrency` clients, each with its own keep-alive session."""
    local = threading.local()

    def ask(prompt: str) -> tuple[float, int]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        t0 = time.perf_counter()
        reply = session.post(f"{url}/v1/completions", json={"prompt": prompt, **workload}, timeout=600)
        reply.raise_for_status()
        return time.perf_counter() - t0, reply.json()["usage"]["completion_tokens"]

    outcomes, wall, before, after = _closed_loop(url, prompts, concurrency, ask)
    steps, prefills = after["decode_steps"] - before["decode_steps"], after["prefills"] - before["prefills"]
    latencies = [latency for latency, _ in outcomes]
    tokens = sum(count for _, count in outcomes)
    return {"target": f"served@{concurrency}", "concurrency": concurrency, "requests": len(prompts), "tokens": tokens,
            "wall_s": wall, "tokens_per_s": tokens / wall,
            "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
            "ttft_p50_ms": 1000 * percentile(latencies, 0.5), "ttft_p99_ms": 1000 * percentile(latencies, 0.99),
            "mean_active_rows": (after["decoded_rows"] - before["decoded_rows"]) / steps if steps else None,
            "decode_steps": steps, "prefills": prefills}


def run_streamed(url: str, prompts: list[str], workload: dict, concurrency: int) -> dict:
    """The workload as stream=true requests: per request, when its first token and each next one arrived."""
    local = threading.local()

    def ask(prompt: str) -> tuple[float, float, list[float], int]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        t0 = time.perf_counter()
        arrivals: list[float] = []
        tokens = 0
        payload = {"prompt": prompt, **workload, "stream": True, "stream_options": {"include_usage": True}}
        with session.post(f"{url}/v1/completions", json=payload, stream=True, timeout=600) as reply:
            reply.raise_for_status()
            for line in reply.iter_lines(chunk_size=None):
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[len(b"data: "):])
                if chunk["choices"]:
                    arrivals.append(time.perf_counter())
                elif chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
        total = time.perf_counter() - t0
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        return total, arrivals[0] - t0, gaps, tokens

    outcomes, wall, before, after = _closed_loop(url, prompts, concurrency, ask)
    steps = after["decode_steps"] - before["decode_steps"]
    latencies = [o[0] for o in outcomes]
    ttfts = [o[1] for o in outcomes]
    gaps = [gap for o in outcomes for gap in o[2]]
    tokens = sum(o[3] for o in outcomes)
    return {"target": f"streamed@{concurrency}", "concurrency": concurrency, "streamed": True,
            "requests": len(prompts), "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
            "ttft_p50_ms": 1000 * percentile(ttfts, 0.5), "ttft_p99_ms": 1000 * percentile(ttfts, 0.99),
            "itl_p50_ms": 1000 * percentile(gaps, 0.5) if gaps else None,
            "itl_p99_ms": 1000 * percentile(gaps, 0.99) if gaps else None,
            "mean_active_rows": (after["decoded_rows"] - before["decoded_rows"]) / steps if steps else None,
            "decode_steps": steps, "chunks": sum(len(o[2]) + 1 for o in outcomes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per target (default 64)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--batch", type=int, default=16, help="direct batch size = deployment max batch size")
    parser.add_argument("--max-queue-delay-us", type=int, default=None, help="default: the deployment's")
    parser.add_argument("--backend", choices=("pytriton", "ray"), default="pytriton",
                        help="ray: compare PyTriton with Ray Serve at each --replicas count")
    parser.add_argument("--replicas", default="1,2", help="with --backend ray: replica counts (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="CI smoke: short workload, 16 requests, 1 round")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated (default short,fixed)")
    parser.add_argument("--standin", action="store_true",
                        help="the front's ceiling only: the stand-in engine behind each --standin-backends target")
    parser.add_argument("--standin-backends", default="pytriton,ray x1,ray x2",
                        help="with --standin: targets, comma-separated (default pytriton,ray x1,ray x2)")
    parser.add_argument("--step-ms", type=float, default=10.0,
                        help="with --standin: the stand-in's wall-clock delay per decode step in the streaming-cost "
                             "and replica-scaling cells (default 10; the ceiling cells answer at once)")
    parser.add_argument("--standin-requests", type=int, default=256, help="with --standin: requests per cell")
    args = parser.parse_args()
    if args.standin or args.quick:
        front_ceiling(args)
        if args.standin:
            return
    workloads = {name: WORKLOADS[name] for name in args.workloads.split(",")}
    concurrencies = CONCURRENCY
    if args.quick:
        args.requests, args.rounds, args.replicas = 16, 1, "1"
        workloads, concurrencies = {"short": WORKLOADS["short"]}, (1, 16)
    args.workloads, args.concurrencies = workloads, concurrencies
    if args.backend == "ray":
        compare_backends(args)
        return

    from pytest_nemo_eval.checkpoint.loader import load_checkpoint
    from pytest_nemo_eval.serving.engine import GenerationEngine

    checkpoint = ensure_demo_checkpoint()
    prompts = load_prompts(args.requests)
    rounds: list[dict[str, list[dict]]] = []
    options = {} if args.max_queue_delay_us is None else {"max_queue_delay_us": args.max_queue_delay_us}
    settings = DeploymentSettings(checkpoint=checkpoint, max_batch_size=args.batch, **options)
    engine = GenerationEngine(load_checkpoint(checkpoint), slots=args.batch)
    try:
        with Deployment(settings) as deployment:
            startup_s = deployment.startup_s
            for round_index in range(args.rounds):
                measured = {}
                for name, workload in workloads.items():
                    table = [run_direct(engine, prompts, workload, args.batch)]
                    table += [run_served(deployment.url, prompts, workload, c) for c in concurrencies]
                    table += [run_streamed(deployment.url, prompts, workload, c) for c in concurrencies]
                    for row in table:
                        row["ratio_to_direct"] = row["tokens_per_s"] / table[0]["tokens_per_s"]
                    measured[name] = table
                    print(f"round {round_index + 1}/{args.rounds} {name}: "
                          + ", ".join(f"{row['target']} {row['ratio_to_direct']:.2f}x" for row in table[1:]), flush=True)
                rounds.append(measured)
    finally:
        engine.close()

    summary = {name: summarize([r[name] for r in rounds]) for name in workloads}
    print(f"\nmedians of {args.rounds} rounds")
    print(f"{'workload':<10}{'target':<15}{'tokens/s':>9}{'x direct':>9}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'TTFT p50':>9}{'TTFT p99':>9}{'ITL p50':>8}{'ITL p99':>8}{'rows/step':>10}")

    def cell(value, width: int) -> str:
        return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"

    for name, table in summary.items():
        for row in table["targets"]:
            print(f"{name:<10}{row['target']:<15}{row['tokens_per_s']:>9.1f}{row['ratio_to_direct']:>9.2f}"
                  f"{row['p50_ms']:>8.1f}{row['p99_ms']:>8.1f}{cell(row.get('ttft_p50_ms'), 9)}"
                  f"{cell(row.get('ttft_p99_ms'), 9)}{cell(row.get('itl_p50_ms'), 8)}{cell(row.get('itl_p99_ms'), 8)}"
                  f"{cell(row.get('mean_active_rows'), 10)}")
        print(f"{name}: served@16 = {table['served16_vs_direct']:.2f}x direct; "
              f"16 clients vs 1: {table['speedup_16_vs_1']:.2f}x")
    print(f"deployment startup {startup_s:.1f} s")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "bench_serving", "quick": args.quick, "checkpoint": checkpoint.name, "workloads": workloads,
        "requests": args.requests, "batch": args.batch, "max_queue_delay_us": settings.max_queue_delay_us,
        "deployment_startup_s": startup_s, "summary": summary, "rounds": rounds,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


FRONT_RESULTS = results_path("bench_serving_front.json")


def front_ceiling(args) -> None:
    """--standin (and a small part of --quick, so the stand-in path cannot rot): _front_ceiling.py's table."""
    import _front_ceiling

    backends = ["pytriton"] if args.quick else [b.strip() for b in args.standin_backends.split(",")]
    measured = _front_ceiling.run(ensure_demo_checkpoint(), backends=backends, quick=args.quick,
                                  requests_per_cell=64 if args.quick else args.standin_requests,
                                  step_ms=args.step_ms, batch=args.batch, real_engine=args.standin and not args.quick
                                  and "pytriton" in backends)
    FRONT_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    FRONT_RESULTS.write_text(json.dumps({
        "benchmark": "bench_serving --standin", "quick": args.quick, "backends": backends, **measured,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg": os.getloadavg()},
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {FRONT_RESULTS}")


BACKEND_RESULTS = results_path("bench_serving_backends.json")
BACKEND_CLIENTS = 16


def compare_backends(args) -> None:
    """PyTriton x1 against Ray Serve x N (each replica 1 CPU), served@16 on both workloads, interleaved rounds."""
    checkpoint = ensure_demo_checkpoint()
    prompts = load_prompts(args.requests)
    targets = {"pytriton": DeploymentSettings(checkpoint=checkpoint, max_batch_size=args.batch)}
    for n in (int(x) for x in args.replicas.split(",")):
        targets[f"ray x{n}"] = DeploymentSettings(checkpoint=checkpoint, max_batch_size=args.batch, backend="ray",
                                                  replicas=n, replica_cpus=1)
    deployments: dict[str, Deployment] = {}
    rounds: list[dict] = []
    try:
        for name, settings in targets.items():
            deployments[name] = Deployment(settings).start()
            print(f"{name}: up in {deployments[name].startup_s:.1f} s", flush=True)
        for round_index in range(args.rounds):
            measured: dict[str, dict[str, dict]] = {}
            for workload_name, workload in args.workloads.items():
                for name, deployment in deployments.items():
                    row = run_served(deployment.url, prompts, workload, BACKEND_CLIENTS)
                    measured.setdefault(workload_name, {})[name] = row
                base = measured[workload_name]["pytriton"]["tokens_per_s"]
                for row in measured[workload_name].values():
                    row["ratio_to_pytriton"] = row["tokens_per_s"] / base
                print(f"round {round_index + 1}/{args.rounds} {workload_name}: " + ", ".join(
                    f"{n} {r['tokens_per_s']:.0f} tok/s ({r['ratio_to_pytriton']:.2f}x)"
                    for n, r in measured[workload_name].items()), flush=True)
            rounds.append(measured)
        startup = {name: d.startup_s for name, d in deployments.items()}
    finally:
        for deployment in deployments.values():
            deployment.stop()
    summary = {w: {name: {key: statistics.median(r[w][name][key] for r in rounds)
                          for key in ("tokens_per_s", "ratio_to_pytriton", "p50_ms", "p99_ms")}
                   for name in targets} for w in args.workloads}
    print(f"\nmedians of {args.rounds} rounds, {BACKEND_CLIENTS} clients, {args.requests} requests per target")
    print(f"{'workload':<10}{'target':<12}{'tokens/s':>9}{'x pytriton':>11}{'p50 ms':>8}{'p99 ms':>8}{'startup s':>10}")
    for w, rows in summary.items():
        for name, row in rows.items():
            print(f"{w:<10}{name:<12}{row['tokens_per_s']:>9.1f}{row['ratio_to_pytriton']:>11.2f}"
                  f"{row['p50_ms']:>8.1f}{row['p99_ms']:>8.1f}{startup[name]:>10.1f}")
    BACKEND_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    BACKEND_RESULTS.write_text(json.dumps({
        "benchmark": "bench_serving --backend ray", "quick": args.quick, "checkpoint": checkpoint.name,
        "workloads": args.workloads,
        "clients": BACKEND_CLIENTS, "requests": args.requests, "batch": args.batch, "startup_s": startup,
        "summary": summary, "rounds": rounds,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "note": "shared with other jobs while measured"},
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {BACKEND_RESULTS}")


def summarize(tables: list[list[dict]]) -> dict:
    """Per target, the median over rounds of each number; ratios were taken within each round."""
    targets = []
    for rows in zip(*tables):
        merged = dict(rows[0])
        for key in ("tokens_per_s", "ratio_to_direct", "p50_ms", "p99_ms", "mean_active_rows", "ttft_p50_ms",
                    "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms"):
            values = [row[key] for row in rows if row.get(key) is not None]
            merged[key] = statistics.median(values) if values else None
        targets.append(merged)
    by_c = {row["concurrency"]: row for row in targets if row["concurrency"] and not row.get("streamed")}
    return {"targets": targets, "served16_vs_direct": by_c[16]["ratio_to_direct"],
            "speedup_16_vs_1": statistics.median(
                [_row(t, "served@16")["tokens_per_s"] / _row(t, "served@1")["tokens_per_s"] for t in tables])}


def _row(table: list[dict], target: str) -> dict:
    return next(row for row in table if row["target"] == target)


if __name__ == "__main__":
    main()
