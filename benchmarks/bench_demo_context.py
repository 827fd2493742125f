"""Benchmark: what serving a 4096-token context costs the engine, against the old 128-token one.

Recipe 7 of the demo serves 4096 tokens (recipe 6 served 128). The engine's KV
cache spans `slots x context` positions, and under steady load its shared
timeline only restarts when no request is active, so a decode step attends over
up to the whole context: the cost grows with it. One run, one checkpoint (the
demo), two engines side by side in interleaved rounds:

  ctx 4096   the checkpoint as served
  ctx 128    the same weights with the served context capped at 128 (the old demo's)

Workloads (held-out addition prompts, greedy):

  batch     --batch requests at a time, max_tokens 16 (timeline restarts between batches)
  steady    --batch client threads in a closed loop, max_tokens 64 with ignore_eos (the timeline
            keeps moving, so late decode steps attend over most of the context)

and, on the 4096 engine alone, one prompt of 1000 and of 3500 tokens (real text of this
repository's README, byte-fallback tokens included) generating 32 tokens: its latency.
Reported: generated tokens/s per engine, the ratio 4096/128 within each round (median over
rounds), KV cache size. JSON in benchmarks/results/bench_demo_context.json.
Run: python benchmarks/bench_demo_context.py [--requests N] [--rounds R] [--batch B] [--quick]
     (--quick, the CI check: 8 requests in batches of 4, 1 round, the 1000-token prompt only)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import results_path  # noqa: E402
from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint  # noqa: E402

RESULTS = results_path("bench_demo_context.json")
DATA = ROOT / "pytest_nemo_eval" / "harness" / "builtin" / "data" / "demo_addition.jsonl"
OLD_CONTEXT = 128


def load_prompts(count: int) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    return [rows[i % len(rows)]["prompt"] for i in range(count)]


def run_batches(engine, prompts: list[str], batch: int) -> dict:
    from pytest_nemo_eval.serving.engine import GenerationRequest

    requests = [GenerationRequest(prompt_ids=engine.tokenizer.encode(p), max_tokens=16) for p in prompts]
    began, tokens = time.perf_counter(), 0
    for start in range(0, len(requests), batch):
        tokens += sum(len(r.output_ids) for r in engine.generate(requests[start : start + batch]))
    wall = time.perf_counter() - began
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def run_steady(engine, prompts: list[str], clients: int) -> dict:
    from pytest_nemo_eval.serving.engine import GenerationRequest

    queue = list(prompts)
    lock, tokens = threading.Lock(), [0]

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                prompt = queue.pop()
            request = GenerationRequest(prompt_ids=engine.tokenizer.encode(prompt), max_tokens=64, ignore_eos=True)
            produced = len(engine.generate([request])[0].output_ids)
            with lock:
                tokens[0] += produced

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {"tokens": tokens[0], "wall_s": wall, "tokens_per_s": tokens[0] / wall,
            "mean_active_rows": engine.stats().mean_active_rows}


def long_prompt_latency(engine, length: int) -> dict:
    from pytest_nemo_eval.serving.engine import GenerationRequest

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    ids = (engine.tokenizer.encode(text) * (1 + length // max(1, len(text))))[:length]
    began = time.perf_counter()
    result = engine.generate([GenerationRequest(prompt_ids=ids, max_tokens=32, ignore_eos=True)])[0]
    return {"prompt_tokens": len(ids), "generated": len(result.output_ids), "latency_s": time.perf_counter() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 8 requests, batch 4, 1 round, one long prompt")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds, args.batch = 8, 1, 4

    from pytest_nemo_eval.checkpoint.loader import load_checkpoint
    from pytest_nemo_eval.serving.engine import GenerationEngine

    checkpoint = load_checkpoint(ensure_demo_checkpoint(progress=lambda line: print(line, file=sys.stderr)))
    capped = dataclasses.replace(checkpoint, config=checkpoint.config.model_copy(update={"seq_length": OLD_CONTEXT}))
    engines = {checkpoint.config.seq_length: GenerationEngine(checkpoint, slots=args.batch),
               OLD_CONTEXT: GenerationEngine(capped, slots=args.batch)}
    prompts = load_prompts(args.requests)
    for engine in engines.values():
        run_batches(engine, prompts[: args.batch], args.batch)  # warm-up
    rounds = []
    for _ in range(args.rounds):
        row = {}
        for context, engine in engines.items():
            row[context] = {"batch": run_batches(engine, prompts, args.batch),
                            "steady": run_steady(engine, prompts, args.batch)}
        rounds.append(row)
    big = max(engines)
    ratios = {workload: statistics.median(r[big][workload]["tokens_per_s"] / r[OLD_CONTEXT][workload]["tokens_per_s"]
                                          for r in rounds) for workload in ("batch", "steady")}
    medians = {context: {workload: statistics.median(r[context][workload]["tokens_per_s"] for r in rounds)
                         for workload in ("batch", "steady")} for context in engines}
    long_prompts = [long_prompt_latency(engines[big], length) for length in ((1000,) if args.quick else (1000, 3500))]
    for engine in engines.values():
        engine.close()

    print(f"{'workload':<10} {'ctx 128 tok/s':>14} {'ctx ' + str(big) + ' tok/s':>15} {'ratio':>7}")
    for workload in ("batch", "steady"):
        print(f"{workload:<10} {medians[OLD_CONTEXT][workload]:>14.1f} {medians[big][workload]:>15.1f} "
              f"{ratios[workload]:>7.2f}")
    for entry in long_prompts:
        print(f"prompt of {entry['prompt_tokens']} tokens + 32 generated: {entry['latency_s']:.2f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "python": sys.version},
        "args": vars(args), "medians_tokens_per_s": medians, "ratio_4096_over_128": ratios,
        "long_prompts": long_prompts, "rounds": rounds}, indent=2, default=str), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
