"""The framework definitions an installed eval-factory package ships (`core_evals/<pkg>/framework.yml`):
its framework name, its command template and its tasks. Read from the venv of the `nemo-evaluator`
on PATH (the one `runtime: local` runs), so what the plugin checks is what will run.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from . import eval_factory
from .errors import UnknownTask, close_matches_hint


class FrameworkDefinition(BaseModel):
    """One installed framework.yml: `name` is what `--eval_type <name>.<task>` says."""

    model_config = ConfigDict(frozen=True)
    name: str
    path: Path
    command: str
    tasks: dict[str, str]  # task type -> its YAML block as text (params, extra args)

    def task_text(self, task: str) -> str:
        return self.tasks.get(task, "")


def evaluator_cli() -> Path | None:
    """The `nemo-evaluator` (or older `eval-factory`) command on PATH."""
    found = next(filter(None, map(shutil.which, eval_factory.EVALUATOR_COMMANDS)), None)
    return Path(found) if found else None


def installed_definition(harness: str) -> FrameworkDefinition | None:
    """The framework.yml of `harness` (image or framework name) in the venv of the `nemo-evaluator` on PATH."""
    cli = evaluator_cli()
    if cli is None:
        return None
    wanted = {harness, eval_factory.framework_name(harness)}
    for definition in _definitions(str(cli.parent)):
        if definition.name in wanted:
            return definition
    return None


@functools.lru_cache(maxsize=8)
def _definitions(bin_dir: str) -> tuple[FrameworkDefinition, ...]:
    found = []
    for path in sorted(Path(bin_dir).parent.glob("lib/python*/site-packages/core_evals/*/framework.yml")):
        try:
            data = yaml.safe_load(path.read_text()) or {}
            tasks = {}
            for evaluation in data.get("evaluations") or []:
                config = (evaluation.get("defaults") or {}).get("config") or {}
                if config.get("type"):
                    tasks[str(config["type"])] = yaml.safe_dump(evaluation)
            found.append(FrameworkDefinition(
                name=str(data["framework"]["name"]), path=path,
                command=str((data.get("defaults") or {}).get("command") or ""), tasks=tasks))
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            continue  # a broken definition is nemo-evaluator's to report when it runs
    return tuple(found)


CODE_EXECUTION_FLAGS = ("--allow_code_execution", "--confirm_run_unsafe_code")


def runs_model_code(harness: str, task: str, overrides: dict) -> bool:
    """Whether an eval-factory task executes model-written code: its installed command template or task
    block passes a code-execution flag (bigcode always does), the suite's overrides add one, or the
    table of harnesses that do it silently (eval_factory.KNOWN_HARNESSES[...].code_tasks) lists it."""
    text = " ".join(str(value) for value in overrides.values())
    definition = installed_definition(harness)
    if definition is not None:
        text += " " + definition.command + " " + definition.task_text(task)
    return any(flag in text for flag in CODE_EXECUTION_FLAGS) or eval_factory.silently_runs_code(harness, task)


def check_task(harness: str, task: str) -> None:
    """Raise `UnknownTask` (with the closest names) when the installed package does not define `task`;
    nothing to check when the package is not installed here or runs any task (lm-eval)."""
    known = eval_factory.known_harness(harness)
    if known is not None and known.open_tasks:
        return
    definition = installed_definition(harness)
    if definition is None or task in definition.tasks:
        return
    same_but_case = [name for name in definition.tasks if name.lower() == task.lower()]
    hint = f" Did you mean: {', '.join(same_but_case)}?" if same_but_case else close_matches_hint(task, definition.tasks)
    raise UnknownTask(
        f"Task {task!r} is not one of the {len(definition.tasks)} tasks of {definition.name} "
        f"({definition.path}).{hint} The suite's `task` is the task type of "
        f"`nemo-evaluator ls` (its framework.yml's `config.type`)."
    )
