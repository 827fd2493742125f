"""An inspect_ai tool-use eval (run by tests/clients/test_inspect_tools.py in its own venv, .venv-inspect):
inspect's own agent loop offers the `add` tool, executes the model's call, sends the result back, and scores
the final answer with its `match` scorer. The questions are the demo's held-out tool-call items."""

import json
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import match
from inspect_ai.solver import generate, use_tools
from inspect_ai.tool import tool


@tool
def add():
    async def execute(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: First number to add.
            b: Second number to add.
        """
        return a + b

    return execute


@task
def demo_add(data: str, limit: int = 20) -> Task:
    samples = []
    for line in Path(data).read_text(encoding="utf-8").splitlines()[:limit]:
        record = json.loads(line)
        arguments = record["call"]["arguments"]
        samples.append(Sample(id=record["id"], input=record["messages"][-1]["content"],
                              target=str(arguments["a"] + arguments["b"])))
    return Task(dataset=samples, solver=[use_tools(add()), generate()], scorer=match(numeric=True))
