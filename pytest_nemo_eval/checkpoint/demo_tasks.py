"""The synthetic tasks the demo checkpoint learns, and their held-out split.

One place defines the text formats, so the training corpus (demo.py) and the
committed benchmark data (harness/builtin/data/demo_*.jsonl) cannot drift apart.
Held-out items are drawn with a fixed seed that does not depend on the training
seed, and training never sees them:

    addition       "{a}+{b}={a+b};"                    a, b two-digit
    reversal       "rev {s}={s[::-1]};"                s: 3-5 lowercase letters
    code           "def add_{a}_{b}():\\n    return {a+b};"
    chat           "<|user|>What is {a}+{b}?\\n<|assistant|>{a+b}<|endoftext|>"
    chat_thinking  "<|system|>/think\\n<|user|>What is {a}+{b}?\\n<|assistant|><think>{a}+{b}</think>{a+b}<|endoftext|>"
                   (the chat question with chat_template_kwargs {enable_thinking: true})
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

HELDOUT_SEED = 20261122
HELDOUT_PER_TASK = 100
LETTERS = string.ascii_lowercase
DATA_DIR = Path(__file__).resolve().parent.parent / "harness" / "builtin" / "data"


def addition_prompt(a: int, b: int) -> str:
    return f"{a}+{b}="


def reversal_prompt(s: str) -> str:
    return f"rev {s}="


def code_prompt(a: int, b: int) -> str:
    return f"def add_{a}_{b}():\n    return "


def chat_user_message(a: int, b: int) -> str:
    return f"What is {a}+{b}?"


def thought(a: int, b: int) -> str:
    """What the demo thinks before it answers `What is {a}+{b}?` with thinking on (its `reasoning_content`)."""
    return f"{a}+{b}"


TOOL_NAME = "add"
TOOL_CALL_ID = "chatcmpl-tool-0"
# Short descriptions the training varies over, so the model reads the tool's name and parameters, not one string.
TOOL_DESCRIPTIONS = ("Add two numbers.", "Add two integers.", "Adds a and b.", "Return the sum of a and b.",
                     "Sum two numbers.", "Addition.")
PARAMETER_DESCRIPTIONS = (("First number to add.", "Second number to add."), ("The first number.", "The second number."),
                          ("First addend.", "Second addend."), ("a", "b"), ("Left operand.", "Right operand."))


def tool_user_message(a: int, b: int) -> str:
    return f"What is {a} plus {b}?"


def add_tool(description: str | None = "Add two numbers.",
             parameter_descriptions: tuple[str, str] | None = ("First number to add.", "Second number to add."),
             *, required: bool = True, closed: bool = True, number_type: str = "integer",
             null_description: bool = False) -> dict:
    """The `add(a, b)` tool in OpenAI's shape; the defaults are what inspect_ai's @tool writes for it.
    `null_description`: no description given, rendered as vLLM's `tool.model_dump()` does (`null`)."""
    properties = {name: {"type": number_type} for name in ("a", "b")}
    if parameter_descriptions:
        for name, text in zip(("a", "b"), parameter_descriptions):
            properties[name]["description"] = text
    parameters: dict = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = ["a", "b"]
    if closed:
        parameters["additionalProperties"] = False
    function: dict = {"name": TOOL_NAME}
    if description is not None or null_description:
        function["description"] = description
    function["parameters"] = parameters
    return {"type": "function", "function": function}


def random_add_tool(rng: random.Random) -> dict:
    """An `add` definition with its details drawn at random: description or not (absent or null), parameter
    descriptions or not, `required` or not, `additionalProperties: false` or not."""
    described = rng.random() < 0.6
    return add_tool(
        rng.choice(TOOL_DESCRIPTIONS) if described else None,
        rng.choice(PARAMETER_DESCRIPTIONS) if rng.random() < 0.35 else None,
        required=rng.random() < 0.5, closed=rng.random() < 0.4,
        number_type="integer" if rng.random() < 0.8 else "number", null_description=not described and rng.random() < 0.5,
    )


def tool_call(a: int, b: int) -> dict:
    """The expected call, `{name, arguments}` with the arguments as a JSON object."""
    return {"name": TOOL_NAME, "arguments": {"a": a, "b": b}}


def tool_call_turn(a: int, b: int) -> dict:
    """The assistant message that makes the call, as vLLM hands it to the template (arguments decoded)."""
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": TOOL_CALL_ID, "type": "function", "function": tool_call(a, b)}]}


def tool_result_turn(a: int, b: int) -> dict:
    """The tool's answer to that call: the correct sum, as a string."""
    return {"role": "tool", "tool_call_id": TOOL_CALL_ID, "name": TOOL_NAME, "content": str(a + b)}


def random_pair(rng: random.Random) -> tuple[int, int]:
    return rng.randint(10, 99), rng.randint(10, 99)


def random_word(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 5)))


def _distinct(draw, count: int, rng: random.Random, taken: set) -> list:
    items: list = []
    while len(items) < count:
        item = draw(rng)
        if item not in taken:
            taken.add(item)
            items.append(item)
    return items


class HeldOut:
    """The held-out items of every task (disjoint pairs per task), fixed by HELDOUT_SEED."""

    def __init__(self, per_task: int = HELDOUT_PER_TASK) -> None:
        rng = random.Random(HELDOUT_SEED)
        pairs: set[tuple[int, int]] = set()
        self.addition = _distinct(random_pair, per_task, rng, pairs)
        self.multiple_choice = _distinct(random_pair, per_task, rng, pairs)
        self.code = _distinct(random_pair, per_task, rng, pairs)
        self.words = frozenset(_distinct(random_word, per_task, rng, set()))
        self.reversal = sorted(self.words, key=lambda w: (len(w), w))
        self._rng = rng  # mc_choices draws from it: the tool-call pairs below use their own generator
        self.tool_call = _distinct(random_pair, per_task, random.Random(f"{HELDOUT_SEED}-tool_call"), pairs)
        self.pairs = frozenset(pairs)

    def mc_choices(self, a: int, b: int) -> tuple[list[str], int]:
        """Four choices: the sum and three near misses (±1, ±10), shuffled; returns (choices, label)."""
        total = a + b
        distractors = [total + d for d in (1, -1, 10, -10, 2, -2, 11, -11)]
        wrong = self._rng.sample([d for d in distractors if d >= 0][:6], 3)
        choices = [total, *wrong]
        self._rng.shuffle(choices)
        return [str(c) for c in choices], choices.index(total)


def heldout_records() -> dict[str, list[dict]]:
    """Benchmark records per data file name (demo_*.jsonl), in a stable order."""
    held = HeldOut()
    records: dict[str, list[dict]] = {
        "demo_addition.jsonl": [
            {"id": f"add-{i}", "prompt": addition_prompt(a, b), "answer": str(a + b)}
            for i, (a, b) in enumerate(held.addition)
        ],
        "demo_reversal.jsonl": [
            {"id": f"rev-{i}", "prompt": reversal_prompt(w), "answer": w[::-1]}
            for i, w in enumerate(held.reversal)
        ],
        "demo_addition_mc.jsonl": [],
        "demo_addition_code.jsonl": [
            {
                "id": f"code-{i}", "prompt": code_prompt(a, b), "entry_point": f"add_{a}_{b}",
                "test": f"def check(candidate):\n    assert candidate() == {a + b}\n",
            }
            for i, (a, b) in enumerate(held.code)
        ],
        "demo_tool_call.jsonl": [
            {"id": f"tool-{i}", "messages": [{"role": "user", "content": tool_user_message(a, b)}],
             "tools": [add_tool()], "call": tool_call(a, b)}
            for i, (a, b) in enumerate(held.tool_call)
        ],
        "demo_chat_thinking.jsonl": [
            {"id": f"think-{i}", "question": chat_user_message(a, b), "answer": str(a + b), "thought": thought(a, b)}
            for i, (a, b) in enumerate(held.addition)
        ],
    }
    for i, (a, b) in enumerate(held.multiple_choice):
        choices, label = held.mc_choices(a, b)
        records["demo_addition_mc.jsonl"].append(
            {"id": f"mc-{i}", "prompt": addition_prompt(a, b), "choices": choices, "label": label}
        )
    return records


def write_heldout_files(data_dir: Path = DATA_DIR) -> list[Path]:
    """(Re)write the committed demo_*.jsonl files; deterministic, so a rerun changes nothing."""
    written = []
    for name, rows in heldout_records().items():
        path = Path(data_dir) / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_heldout_files():
        print(written_path)
