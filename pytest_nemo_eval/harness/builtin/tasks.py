"""Task specs of the builtin harness, and where they are found.

A task is one small YAML file pointing at JSONL data:

    type: exact_match            # or multiple_choice, code, tool_call
    description: two-digit addition
    data: ../data/demo_addition.jsonl      # relative to this YAML file
    prompt_template: "{prompt}"            # formatted with the record's fields
    ...type-specific fields (see the spec classes below)

Specs are looked up, in order of precedence, in the folders/files listed in the
environment variable NEMO_EVAL_TASKS_PATH (os.pathsep-separated), then in this
package's `tasks/` folder; the task name is the file name without `.yaml`
(or an explicit `name:`). One file can also be run directly with
`--overrides task_spec=/path/to/task.yaml`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import UnknownTask, close_matches_hint

HARNESS_NAME = "builtin"
TASKS_PATH_ENV = "NEMO_EVAL_TASKS_PATH"
PACKAGE_TASKS_DIR = Path(__file__).parent / "tasks"


class InvalidTaskSpec(UnknownTask):
    """A task spec file exists but cannot be used."""


class _SpecBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    description: str = ""
    data: Path
    id_field: str = "id"
    prompt_template: str = "{prompt}"
    spec_path: Path | None = Field(default=None, exclude=True)

    def data_path(self) -> Path:
        base = self.spec_path.parent if self.spec_path else Path.cwd()
        return (base / self.data).resolve()

    def render_prompt(self, record: dict) -> str:
        return self.prompt_template.format(**record)


class ExactMatchSpec(_SpecBase):
    """Generate, extract the answer with a regex (GSM8K-style), compare to the reference exactly."""

    type: Literal["exact_match"]
    answer_field: str = "answer"
    extract_regex: str | None = Field(
        default=None, description="first group (or whole match) is the answer; None: the stripped response"
    )
    extract: Literal["first", "last"] = "first"
    ignore_case: bool = False
    max_tokens: int = 32
    stop: list[str] = Field(default_factory=list)
    temperature: float = 0.0


class MultipleChoiceSpec(_SpecBase):
    """Pick the choice with the highest loglikelihood given the prompt (acc) and per byte (acc_norm)."""

    type: Literal["multiple_choice"]
    choices_field: str = "choices"
    label_field: str = "label"
    choice_template: str = "{choice}"


class CodeSpec(_SpecBase):
    """Generate a function body; run the record's tests on it in a sandbox (pass@1)."""

    type: Literal["code"]
    entry_point_field: str = "entry_point"
    test_field: str = "test"
    check_template: str = "check({entry_point})"
    max_tokens: int = 256
    stop: list[str] = Field(default_factory=lambda: ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"])
    temperature: float = 0.0
    timeout_s: float = 5.0
    memory_mb: int = 512
    max_processes: int = Field(default=8, ge=2)  # tasks per sample under bubblewrap (its init + python + 6)


class ToolCallSpec(_SpecBase):
    """Chat with `tools` offered (tool_choice absent, so `auto`); the reply's first tool call must have the
    record's expected name and arguments (compared as parsed JSON). Needs a chat endpoint."""

    type: Literal["tool_call"]
    messages_field: str = Field(default="messages", description="the conversation, OpenAI chat messages")
    tools_field: str = Field(default="tools", description="the tools offered, OpenAI's shape")
    call_field: str = Field(default="call", description="the expected call: {name, arguments}")
    max_tokens: int = 256
    temperature: float = 0.0


AnySpec = ExactMatchSpec | MultipleChoiceSpec | CodeSpec | ToolCallSpec
TaskSpec = Annotated[AnySpec, Field(discriminator="type")]
_SPEC_ADAPTER: TypeAdapter = TypeAdapter(TaskSpec)


def load_spec(path: Path, name: str | None = None) -> AnySpec:
    """Parse one task YAML; `name` overrides the file's own name."""
    path = Path(path).resolve()
    if not path.is_file():
        raise InvalidTaskSpec(f"Task spec {path} does not exist; check the task_spec override or {TASKS_PATH_ENV}.")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = _SPEC_ADAPTER.validate_python(document)
    except (yaml.YAMLError, ValidationError) as exc:
        raise InvalidTaskSpec(
            f"Task spec {path} is invalid: {exc}\nA spec needs `type` (exact_match, multiple_choice, code, tool_call) "
            "and `data` (a JSONL path); see pytest_nemo_eval/harness/builtin/tasks.py."
        ) from None
    spec.spec_path = path
    spec.name = name or spec.name or path.stem
    return spec


def _spec_files() -> dict[str, Path]:
    """Task name -> spec file; NEMO_EVAL_TASKS_PATH entries win over the packaged ones."""
    locations = [PACKAGE_TASKS_DIR]
    extra = os.environ.get(TASKS_PATH_ENV, "")
    locations += [Path(p) for p in reversed(extra.split(os.pathsep)) if p]
    found: dict[str, Path] = {}
    for location in locations:
        files = sorted(location.glob("*.yaml")) if location.is_dir() else [location]
        for file in files:
            if file.suffix in {".yaml", ".yml"} and file.is_file():
                found[file.stem] = file
    return found


def task_names() -> list[str]:
    """Every available task as `builtin.<name>`, sorted."""
    return sorted(f"{HARNESS_NAME}.{name}" for name in _spec_files())


def find_task(name: str):
    """The spec of task `name` (`demo_addition` or `builtin.demo_addition`); UnknownTask lists close matches."""
    short = name.split(".", 1)[1] if name.startswith(f"{HARNESS_NAME}.") else name
    files = _spec_files()
    if short not in files:
        known = task_names()
        raise UnknownTask(
            f"Unknown builtin task {name!r}.{close_matches_hint(f'{HARNESS_NAME}.{short}', known)} "
            f"Available: {', '.join(known)}. Add your own with a YAML spec in {TASKS_PATH_ENV} "
            "or --overrides task_spec=/path/to/task.yaml."
        )
    return load_spec(files[short])
