"""One demo-recipe experiment in one command: train (or reuse) the demo for each seed, then measure it.

    python scripts/demo_experiment.py --seed 1234 --seed 7 [--set '{"loss_weight": {"tool_answer": 8.0}}']

`--set` merges JSON into demo.TRAINING before training (nested dicts merged), so an experiment needs no edit;
its checkpoint is cached under its own recipe hash like any demo (the committed recipe's is the one the tests
use). Measured greedy on the held-out items (the engine the server uses, prompts rendered by the saved chat
template): addition, reversal, chat, chat with thinking on (content the sum and reasoning the thought), the
tool call, the answer after the tool's result (the sum, as inspect_ai's loop sends it) and after an arbitrary
result. Prints one table and writes JSON (`--json`); the training seconds and steps/s come from the
checkpoint's demo_training.json (compare steps/s across runs on a loaded machine, not wall time).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

from pytest_nemo_eval.checkpoint import demo, load_checkpoint
from pytest_nemo_eval.checkpoint.demo_tasks import (
    HeldOut, add_tool, addition_prompt, chat_user_message, reversal_prompt, thought, tool_call, tool_call_turn,
    tool_result_turn, tool_user_message,
)
from pytest_nemo_eval.serving.engine import GenerationEngine, GenerationRequest
from pytest_nemo_eval.serving.reasoning_parsers import choose_reasoning_parser


def _merge(base: dict, update: dict) -> dict:
    return {k: _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
            for k, v in {**base, **update}.items()}


def _generate(engine, prompts: list[str], max_tokens: int, stop: list[str] | None = None):
    return engine.generate([GenerationRequest(prompt_ids=engine.tokenizer.encode(p), max_tokens=max_tokens,
                                              stop=stop or []) for p in prompts])


def _share(hits) -> float:
    hits = list(hits)
    return round(sum(hits) / len(hits), 3)


def measure(checkpoint: Path) -> dict[str, float]:
    engine = GenerationEngine(load_checkpoint(checkpoint))
    tok, held = engine.tokenizer, HeldOut()
    chat = lambda messages, tools=None, **kw: tok.apply_chat_template(messages, True, tools=tools, **kw)  # noqa: E731
    scores: dict[str, float] = {}
    results = _generate(engine, [addition_prompt(a, b) for a, b in held.addition], 8, [";", "\n"])
    scores["addition"] = _share(r.text == str(a + b) for r, (a, b) in zip(results, held.addition))
    results = _generate(engine, [reversal_prompt(w) for w in held.reversal], 16, [";", "\n"])
    scores["reversal"] = _share(r.text == w[::-1] for r, w in zip(results, held.reversal))
    questions = [[{"role": "user", "content": chat_user_message(a, b)}] for a, b in held.addition]
    results = _generate(engine, [chat(m) for m in questions], 8)
    scores["chat"] = _share(r.text == str(a + b) and r.finish_reason == "stop" for r, (a, b) in zip(results, held.addition))
    parser = choose_reasoning_parser(None, tok.chat_template)
    results = _generate(engine, [chat(m, enable_thinking=True) for m in questions], 32)
    splits = [parser.split(r.text) if parser else None for r in results]
    scores["chat_thinking"] = _share(s is not None and s.content == str(a + b) and s.reasoning == thought(a, b)
                                     for s, (a, b) in zip(splits, held.addition))
    scores["chat_thinking_content"] = _share(s is not None and s.content == str(a + b)
                                             for s, (a, b) in zip(splits, held.addition))
    tools = [add_tool()]
    asks = [[{"role": "user", "content": tool_user_message(a, b)}] for a, b in held.tool_call]
    results = _generate(engine, [chat(m, tools) for m in asks], 96)
    expected = [f'<tool_call>\n{json.dumps(tool_call(a, b))}\n</tool_call>' for a, b in held.tool_call]
    scores["tool_call"] = _share(r.text == e for r, e in zip(results, expected))
    rng = random.Random(0)
    for name, arbitrary in (("answer_from_result", False), ("answer_from_arbitrary_result", True)):
        conversations, answers = [], []
        for (a, b), ask in zip(held.tool_call, asks):
            result = tool_result_turn(a, b)
            if arbitrary:
                result["content"] = str(rng.choice([n for n in range(20, 199) if n != a + b]))
            conversations.append(chat([*ask, tool_call_turn(a, b), result], tools))
            answers.append(result["content"])
        results = _generate(engine, conversations, 6)
        scores[name] = _share(r.text == answer and r.finish_reason == "stop" for r, answer in zip(results, answers))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", help="training seed (repeatable); default 1234")
    parser.add_argument("--set", default="{}", help="JSON merged into demo.TRAINING before training")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    training = _merge(copy.deepcopy(demo.TRAINING), json.loads(args.set))
    demo.TRAINING.clear()
    demo.TRAINING.update(training)
    rows = []
    for seed in args.seed or [demo.DEFAULT_SEED]:
        started = time.monotonic()
        checkpoint = demo.ensure_demo_checkpoint(seed=seed, progress=lambda line: print(line, file=sys.stderr))
        log = json.loads((checkpoint / "demo_training.json").read_text())["log"]
        row = {"seed": seed, "checkpoint": checkpoint.name, "train_s": log[-1]["seconds"],
               "steps_per_s": round(log[-1]["step"] / log[-1]["seconds"], 2), "final_loss": log[-1]["loss"],
               **measure(checkpoint), "total_s": round(time.monotonic() - started, 1)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))
    if args.json:
        args.json.write_text(json.dumps({"training": demo.TRAINING, "rows": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
