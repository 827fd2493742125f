"""Benchmark: the serving stack (PyTriton dynamic batching + OpenAI HTTP front) against the engine's ceiling.

One run, the demo checkpoint, one workload (held-out addition prompts, greedy,
a fixed max_tokens and no stop, so every request generates the same number of
tokens), measured side by side:

  direct        GenerationEngine.generate() in this process, batches of --batch (the ceiling)
  served@C      the same prompts as /v1/completions requests to a real `nemo-eval deploy`
                process, from C concurrent clients (C = 1, 4, 16), one keep-alive session each

Reported: generated tokens/s, ratio served/direct, client-side p50/p99 latency
per request, the batch sizes Triton's dynamic batcher formed (from /v1/health),
and the speedup dynamic batching gives at 16 clients over 1. The deployment
and the direct engine never run at the same time. Numbers are for this machine
(CPU, shared cores); the JSON keeps them with the machine's description.
Run: python benchmarks/bench_serving.py [--requests N] [--max-tokens T] [--batch B]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint  # noqa: E402
from pytest_nemo_eval.serving.launcher import Deployment, DeploymentSettings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_serving.json"
DATA = ROOT / "pytest_nemo_eval" / "harness" / "builtin" / "data" / "demo_addition.jsonl"
CONCURRENCY = (1, 4, 16)


def load_prompts(count: int) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    return [rows[i % len(rows)]["prompt"] for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_direct(checkpoint: Path, prompts: list[str], max_tokens: int, batch: int) -> dict:
    """The ceiling: the engine generating the whole workload in batches, no server in between."""
    from pytest_nemo_eval.checkpoint.loader import load_checkpoint
    from pytest_nemo_eval.serving.engine import GenerationEngine, GenerationRequest

    engine = GenerationEngine(load_checkpoint(checkpoint))
    requests_ = [GenerationRequest(prompt_ids=engine.tokenizer.encode(p), max_tokens=max_tokens) for p in prompts]
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


def run_served(url: str, prompts: list[str], max_tokens: int, concurrency: int) -> dict:
    """The same workload as HTTP requests from `concurrency` clients, each with its own keep-alive session."""
    local = threading.local()

    def ask(prompt: str) -> tuple[float, int]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        t0 = time.perf_counter()
        reply = session.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": max_tokens}, timeout=600)
        reply.raise_for_status()
        return time.perf_counter() - t0, reply.json()["usage"]["completion_tokens"]

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(ask, prompts[: 2 * concurrency]))  # warm-up: every client connected
        before = requests.get(f"{url}/v1/health", timeout=30).json()["batching"]
        began = time.perf_counter()
        outcomes = list(pool.map(ask, prompts))
        wall = time.perf_counter() - began
    after = requests.get(f"{url}/v1/health", timeout=30).json()["batching"]
    batches = after["batches"] - before["batches"]
    latencies = [latency for latency, _ in outcomes]
    tokens = sum(count for _, count in outcomes)
    return {"target": f"served@{concurrency}", "concurrency": concurrency, "requests": len(prompts), "tokens": tokens,
            "wall_s": wall, "tokens_per_s": tokens / wall,
            "p50_ms": 1000 * percentile(latencies, 0.5), "p99_ms": 1000 * percentile(latencies, 0.99),
            "mean_batch_size": (after["requests"] - before["requests"]) / batches if batches else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per target (default 64)")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens generated per request (default 16)")
    parser.add_argument("--batch", type=int, default=16, help="direct batch size = deployment max batch size")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    args = parser.parse_args()

    checkpoint = ensure_demo_checkpoint()
    prompts = load_prompts(args.requests)
    rows = []
    settings = DeploymentSettings(checkpoint=checkpoint, max_batch_size=args.batch,
                                  max_queue_delay_us=args.max_queue_delay_us)
    with Deployment(settings) as deployment:
        startup_s = deployment.startup_s
        for concurrency in CONCURRENCY:
            rows.append(run_served(deployment.url, prompts, args.max_tokens, concurrency))
    direct = run_direct(checkpoint, prompts, args.max_tokens, args.batch)
    rows.insert(0, direct)
    for row in rows:
        row["ratio_to_direct"] = row["tokens_per_s"] / direct["tokens_per_s"]
    by_c = {row["concurrency"]: row for row in rows if row["concurrency"]}
    speedup = by_c[16]["tokens_per_s"] / by_c[1]["tokens_per_s"]

    print(f"{'target':<18}{'tokens/s':>10}{'x direct':>10}{'p50 ms':>10}{'p99 ms':>10}{'mean batch':>12}")
    for row in rows:
        mean_batch = row.get("mean_batch_size")
        print(f"{row['target']:<18}{row['tokens_per_s']:>10.1f}{row['ratio_to_direct']:>10.2f}{row['p50_ms']:>10.1f}"
              f"{row['p99_ms']:>10.1f}{(f'{mean_batch:.1f}' if mean_batch else '-'):>12}")
    print(f"dynamic batching speedup, 16 clients vs 1: {speedup:.2f}x; deployment startup {startup_s:.1f} s")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "bench_serving", "checkpoint": checkpoint.name, "max_tokens": args.max_tokens,
        "requests": args.requests, "batch": args.batch, "max_queue_delay_us": args.max_queue_delay_us,
        "deployment_startup_s": startup_s, "speedup_16_vs_1": speedup, "rows": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
