"""The trained demo model scores far above chance on the held-out data the builtin harness uses.

Measured on the committed demo_*.jsonl files (never trained on); the floors are
well under the measured scores (recipe v5: addition 1.00, reversal 0.99, MC 0.99, code 1.00, chat 1.00;
recipe v7, seed 1234: addition 1.00, reversal 1.00, chat 0.36 on all 100 held-out sums; recipe v8, seed 1234:
addition 1.00, reversal 1.00, code 1.00, chat 1.00, tool call 1.00, answer from the tool's result 0.58; seed 7:
addition 0.98, reversal 1.00, code 0.96, chat 0.71, tool call 0.80, answer from the result 0.16; recipe v9,
seed 1234: addition 1.00, reversal 0.96, code 1.00, chat 1.00, tool call 0.96, answer from the result 0.68; seed 7:
addition 1.00, reversal 1.00, code 1.00, chat 1.00, tool call 1.00, answer from the result 0.72; recipe v10, seed
1234: addition 1.00, reversal 1.00, chat 1.00, thinking 1.00, tool call 1.00, answer from the result 1.00; seed 7:
addition 1.00, reversal 1.00, chat 1.00, thinking 0.67, tool call 1.00, answer from the result 0.98) and far
above chance, so a broken loader, tokenizer, chat template or engine fails them.
"""

from __future__ import annotations

import json
import re

import pytest

from pytest_nemo_eval.checkpoint.demo_tasks import DATA_DIR, tool_call_turn, tool_result_turn
from pytest_nemo_eval.serving.engine import GenerationRequest


def _records(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA_DIR / name).read_text().splitlines() if line.strip()]


def _greedy(engine, prompts: list[str], max_tokens: int = 8) -> list[str]:
    requests = [GenerationRequest(prompt_ids=engine.tokenizer.encode(p), max_tokens=max_tokens, stop=[";", "\n"])
                for p in prompts]
    return [result.text for result in engine.generate(requests)]


def _exact_match(engine, name: str) -> float:
    records = _records(name)
    answers = _greedy(engine, [r["prompt"] for r in records])
    return sum(a.strip() == r["answer"] for a, r in zip(answers, records)) / len(records)


def test_addition_exact_match(engine):
    assert _exact_match(engine, "demo_addition.jsonl") >= 0.8  # measured 1.00; chance ~0.01


def test_reversal_exact_match(engine):
    assert _exact_match(engine, "demo_reversal.jsonl") >= 0.7  # measured 0.99; chance ~0


def test_multiple_choice_by_loglikelihood(engine):
    records = _records("demo_addition_mc.jsonl")
    requests, spans = [], []
    for record in records:
        prompt_ids = engine.tokenizer.encode(record["prompt"])
        for choice in record["choices"]:
            requests.append(GenerationRequest(prompt_ids=prompt_ids + engine.tokenizer.encode(choice),
                                              max_tokens=0, logprobs=0, echo=True))
            spans.append(len(prompt_ids))
    results = engine.generate(requests)
    scores = [sum(e.logprob for e in r.prompt_logprobs[start:]) for r, start in zip(results, spans)]
    correct = 0
    for i, record in enumerate(records):
        mine = scores[4 * i: 4 * i + 4]
        correct += mine.index(max(mine)) == record["label"]
    assert correct / len(records) >= 0.8  # measured 0.99; chance 0.25


def test_code_completions_pass_their_tests(engine):
    """Runs each completed function and its asserts (our own model's digits; no sandbox needed here)."""
    records = _records("demo_addition_code.jsonl")
    completions = _greedy(engine, [r["prompt"] for r in records])
    passed = 0
    for record, completion in zip(records, completions):
        namespace: dict = {}
        try:
            exec(f"{record['prompt']}{completion}\n\n{record['test']}\ncheck({record['entry_point']})", namespace)
            passed += 1
        except Exception:
            pass
    assert passed / len(records) >= 0.8  # measured 1.00; chance ~0.01


def test_chat_formatted_question(engine):
    import jinja2

    template = jinja2.Template(engine.tokenizer.chat_template)
    records = _records("demo_addition.jsonl")[:30]
    prompts = [template.render(messages=[{"role": "user", "content": f"What is {r['prompt'][:-1]}?"}],
                               add_generation_prompt=True) for r in records]
    requests = [GenerationRequest(prompt_ids=engine.tokenizer.encode(p), max_tokens=6) for p in prompts]
    results = engine.generate(requests)
    correct = sum(res.text == r["answer"] and res.finish_reason == "stop" for res, r in zip(results, records))
    assert correct / len(records) >= 0.8  # measured 1.00 (30 items)


def test_with_thinking_on_it_thinks_first_and_the_qwen3_parser_splits_thought_from_answer(engine):
    """chat_template_kwargs {enable_thinking: true}: the demo writes `<think>a+b</think>` then the sum; the parser
    the server picks from the template (qwen3) puts the thought in reasoning and the sum alone in content."""
    from pytest_nemo_eval.serving.reasoning_parsers import choose_reasoning_parser

    parser = choose_reasoning_parser(None, engine.tokenizer.chat_template)
    assert parser is not None and parser.name == "qwen3"
    records = _records("demo_chat_thinking.jsonl")
    prompts = [engine.tokenizer.apply_chat_template([{"role": "user", "content": r["question"]}],
                                                   add_generation_prompt=True, enable_thinking=True)
               for r in records]
    results = engine.generate([GenerationRequest(prompt_ids=engine.tokenizer.encode(p), max_tokens=32) for p in prompts])
    splits = [parser.split(res.text) for res in results]
    correct = sum((s.reasoning, s.content) == (r["thought"], r["answer"]) and res.finish_reason == "stop"
                  for s, res, r in zip(splits, results, records))
    assert correct / len(records) >= THINKING_FLOOR  # measured 1.00 (seed 1234), 0.67 (seed 7); chance ~0.01
    assert all(s.reasoning is not None for s in splits)  # with thinking on every reply thinks first


@pytest.mark.parametrize("name", ["demo_addition.jsonl", "demo_reversal.jsonl"])
def test_greedy_generation_is_deterministic(engine, name):
    prompts = [r["prompt"] for r in _records(name)[:10]]
    assert _greedy(engine, prompts) == _greedy(engine, prompts)


# Recipe 10 on the 100 held-out items: the call 1.00 on both seeds, the answer from the tool's result 1.00
# (seed 1234) and 0.98 (seed 7) (recipe 9: 0.68 and 0.72); the thinking sums (thought and answer right) 1.00 and
# 0.67. The floors sit below that, as the other tasks' do, because a demo is trained on each machine and recipe
# variants that changed one training text in two scored 0.39 thinking and 0.87 calls (demo_experiment.py runs
# of the `strict` variant, recorded above TRAINING): what any demo that learned its tasks clears, far above
# chance (~0.01).
THINKING_FLOOR = 0.3
TOOL_CALL_FLOOR = 0.8
TOOL_RESULT_FLOOR = 0.8
HERMES_CALL = re.compile(r"<tool_call>\n(.*)\n</tool_call>", re.DOTALL)


def _hermes_call(text: str):
    """The call the whole reply spells as Hermes does (what vLLM's hermes parser reads), else None."""
    match = HERMES_CALL.fullmatch(text)
    try:
        return json.loads(match.group(1)) if match else None
    except json.JSONDecodeError:
        return None


def _chat(engine, conversations: list[tuple[list[dict], list[dict]]], max_tokens: int):
    """Greedy replies to (messages, tools) rendered by the checkpoint's own template, as the server renders them."""
    prompts = [engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tools=tools)
               for messages, tools in conversations]
    return engine.generate([GenerationRequest(prompt_ids=engine.tokenizer.encode(p), max_tokens=max_tokens)
                            for p in prompts])


def test_offered_the_add_tool_it_calls_it_with_the_question_numbers(engine):
    records = _records("demo_tool_call.jsonl")
    results = _chat(engine, [(r["messages"], r["tools"]) for r in records], max_tokens=96)
    correct = sum(_hermes_call(res.text) == r["call"] and res.finish_reason == "stop"
                  for res, r in zip(results, records))
    assert correct / len(records) >= TOOL_CALL_FLOOR  # measured 1.00 (seed 1234), 1.00 (seed 7); chance ~0


def test_given_the_tools_result_it_answers_the_sum(engine):
    """The answer is read from the result (recipe 10 weighs that turn apart, and most training results are
    arbitrary numbers, so computing the sum does not get them right)."""
    records = _records("demo_tool_call.jsonl")
    conversations = []
    for record in records:
        a, b = record["call"]["arguments"]["a"], record["call"]["arguments"]["b"]
        conversations.append(([*record["messages"], tool_call_turn(a, b), tool_result_turn(a, b)], record["tools"]))
    results = _chat(engine, conversations, max_tokens=6)
    correct = sum(res.text == str(sum(r["call"]["arguments"].values())) and res.finish_reason == "stop"
                  for res, r in zip(results, records))
    assert correct / len(records) >= TOOL_RESULT_FLOOR  # measured 1.00 (seed 1234), 0.98 (seed 7)


def test_without_tools_the_same_question_gets_no_call(engine):
    """The call is the tools' doing: the chat question without them is still answered with the sum."""
    records = _records("demo_tool_call.jsonl")[:30]
    results = _chat(engine, [([{"role": "user", "content": f"What is {r['call']['arguments']['a']}+"
                                                             f"{r['call']['arguments']['b']}?"}], None)
                             for r in records], max_tokens=6)
    assert all("<tool_call>" not in res.text for res in results)
    correct = sum(res.text == str(sum(r["call"]["arguments"].values())) for res, r in zip(results, records))
    assert correct / len(records) >= 0.8  # measured on all 100: 1.00 (seed 1234), 1.00 (seed 7)
