"""Benchmark: what enforcing a JSON schema (structured outputs, llguidance's token mask) costs the engine.

One run, the demo checkpoint, one GenerationEngine of 16 slots, held-out addition
prompts, greedy, --clients client threads in a closed loop (each sends its next
request when the last one ends) until --requests requests are done. Workloads, with
equal work per request:

  plain      no constraint, max_tokens 68 with ignore_eos: every request generates 68 tokens
  schema     a JSON schema whose every valid reply is exactly 68 tokens long on the demo's
             character tokens ({"id": 24 [a-z0-9] characters, "values": six integers 100-999}),
             max_tokens 100: every reply ends at 68 when its grammar completes

Both run in --rounds interleaved rounds; the ratio schema/plain is taken within each
round and its median is reported (this shared machine drifts by tens of percent between
minutes). Also measured on the demo's vocabulary: compiling the schema (uncached and from
the cache) and one step of a constrained row (allowed_mask + accept), median of many.
Reported: generated tokens/s per workload, the ratio, mean active rows per decode step.
JSON in benchmarks/results/bench_structured.json (every round, and the machine).
Run: python benchmarks/bench_structured.py [--requests N] [--rounds R] [--clients C] [--quick]
"""

from __future__ import annotations

import argparse
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

RESULTS = results_path("bench_structured.json")
DATA = ROOT / "pytest_nemo_eval" / "harness" / "builtin" / "data" / "demo_addition.jsonl"
SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string", "pattern": "^[a-z0-9]{24}$"},
                   "values": {"type": "array", "items": {"type": "integer", "minimum": 100, "maximum": 999},
                              "minItems": 6, "maxItems": 6}},
    "required": ["id", "values"], "additionalProperties": False,
}
REPLY_CHARS = len('{"id":"' + "a" * 24 + '","values":[' + ",".join(["100"] * 6) + "]}")  # 68


def load_prompts(count: int) -> list[str]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    return [rows[i % len(rows)]["prompt"] for i in range(count)]


def make_request(engine, prompt: str, workload: str):
    from pytest_nemo_eval.serving.engine import GenerationRequest
    from pytest_nemo_eval.serving.generation import StructuredOutput

    ids = engine.tokenizer.encode(prompt)
    if workload == "plain":
        return GenerationRequest(prompt_ids=ids, max_tokens=REPLY_CHARS, ignore_eos=True)
    return GenerationRequest(prompt_ids=ids, max_tokens=REPLY_CHARS + 32, structured=StructuredOutput(json_schema=SCHEMA))


def run_closed_loop(engine, prompts: list[str], clients: int, workload: str) -> dict:
    queue = list(prompts)
    lock, tokens, stops = threading.Lock(), [0], [0]
    before = engine.stats()

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                prompt = queue.pop()
            result = engine.generate([make_request(engine, prompt, workload)])[0]
            if workload == "schema":
                json.loads(result.text)  # a reply that is not JSON would make the numbers meaningless
            with lock:
                tokens[0] += len(result.output_ids)
                stops[0] += result.finish_reason == "stop"

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    after = engine.stats()
    steps = after.decode_steps - before.decode_steps
    rows = (after.decoded_rows - before.decoded_rows) / steps if steps else 0.0
    return {"tokens": tokens[0], "wall_s": wall, "tokens_per_s": tokens[0] / wall, "stopped": stops[0],
            "mean_active_rows": round(rows, 2)}


def grammar_costs(tokenizer, repeats: int) -> dict:
    """Compile time of SCHEMA and the per-step cost of a constrained row, on this tokenizer's vocabulary."""
    from pytest_nemo_eval.serving.generation import StructuredOutput
    from pytest_nemo_eval.serving.structured_output import ConstrainedDecoding, compile_constraint

    compile_ms, cached_ms, step_us = [], [], []
    reply = tokenizer.encode('{"id":"' + "abc123" * 4 + '","values":[101,202,303,404,505,999]}')
    for i in range(repeats):
        spec = StructuredOutput(json_schema={**SCHEMA, "title": f"uncached {i}"})  # a new key: compiled afresh
        began = time.perf_counter()
        compiled = compile_constraint(spec, tokenizer)
        compile_ms.append((time.perf_counter() - began) * 1e3)
        began = time.perf_counter()
        compile_constraint(spec, tokenizer)
        cached_ms.append((time.perf_counter() - began) * 1e3)
        decoding = ConstrainedDecoding(compiled)
        for token in reply:
            began = time.perf_counter()
            assert decoding.allowed_mask(tokenizer.vocab_size)[token]
            decoding.accept(token)
            step_us.append((time.perf_counter() - began) * 1e6)
        assert decoding.is_finished()
    return {"vocab_size": tokenizer.vocab_size, "compile_ms": statistics.median(compile_ms),
            "cached_compile_ms": statistics.median(cached_ms), "step_us": statistics.median(step_us),
            "steps_measured": len(step_us)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="16 requests, 1 round: a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = args.clients, 1

    from pytest_nemo_eval.checkpoint.loader import load_checkpoint
    from pytest_nemo_eval.serving.engine import GenerationEngine

    checkpoint = load_checkpoint(ensure_demo_checkpoint(progress=lambda line: print(line, file=sys.stderr)),
                                 device="cpu")
    engine = GenerationEngine(checkpoint, slots=args.clients)
    prompts = load_prompts(args.requests)
    workloads = ("plain", "schema")
    for workload in workloads:  # warm-up (and the schema's first compile)
        run_closed_loop(engine, prompts[: args.clients], args.clients, workload)
    rounds = []
    for _ in range(args.rounds):
        rounds.append({workload: run_closed_loop(engine, prompts, args.clients, workload) for workload in workloads})
    engine.close()
    costs = grammar_costs(checkpoint.tokenizer, repeats=5 if args.quick else 50)

    medians = {w: statistics.median(r[w]["tokens_per_s"] for r in rounds) for w in workloads}
    ratio = statistics.median(r["schema"]["tokens_per_s"] / r["plain"]["tokens_per_s"] for r in rounds)
    print(f"{args.clients} concurrent clients, {args.requests} requests x {REPLY_CHARS} tokens, "
          f"{args.rounds} round(s), medians")
    print(f"{'workload':<10} {'tokens/s':>10} {'rows/step':>10} {'stopped':>8}")
    for workload in workloads:
        last = rounds[-1][workload]
        print(f"{workload:<10} {medians[workload]:>10.1f} {last['mean_active_rows']:>10.2f} "
              f"{last['stopped']:>4}/{args.requests:<3}")
    print(f"schema / plain tokens/s: {ratio:.3f}")
    print(f"grammar on the demo vocabulary ({costs['vocab_size']} tokens): compile {costs['compile_ms']:.2f} ms, "
          f"cached {costs['cached_compile_ms']:.3f} ms, one constrained step (mask + accept) {costs['step_us']:.0f} us")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "python": sys.version},
        "args": vars(args), "schema": SCHEMA, "reply_tokens": REPLY_CHARS, "medians_tokens_per_s": medians,
        "ratio_schema_over_plain": ratio, "grammar_costs": costs, "rounds": rounds}, indent=2), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
