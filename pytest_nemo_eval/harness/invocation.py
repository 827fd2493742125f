"""The types every runtime shares: what to run (`HarnessInvocation`), with which
environment (`HarnessEnvironment`), and what a runtime reports back
(`RuntimeOutcome`). Kept apart from runtime.py so that the runtimes import
these and runtime.py imports the runtimes, with no cycle between them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import eval_factory
from .errors import RuntimeUnavailable
from .overrides import join_overrides

BUILTIN_HARNESS = "builtin"
BUILTIN_IMAGE = "nemo-eval-harness:local"
# Where the output dir is mounted inside a harness container.
CONTAINER_OUTPUT_DIR = "/nemo-eval/output"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

LogCallback = Callable[[str], None]


class Mount(BaseModel):
    """A host path mounted read-only into a harness container (at the same path unless `container` says)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    host: Path
    container: str | None = Field(default=None, description="absolute path inside the container; default: host path")

    @field_validator("container")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"container path {value!r} must be absolute")
        return value

    @property
    def target(self) -> str:
        return self.container or str(self.host)


class HarnessInvocation(BaseModel):
    """Everything needed to run one benchmark's harness once."""

    model_config = ConfigDict(extra="forbid")
    harness: str = Field(description='"builtin" or an eval-factory harness name, e.g. "simple-evals"')
    task: str
    model_id: str
    model_url: str = Field(description="full endpoint URL, e.g. http://127.0.0.1:8000/v1/completions")
    model_type: Literal["completions", "chat"] = "completions"
    output_dir: Path
    overrides: dict[str, Any] = Field(default_factory=dict)
    runtime: Literal["docker", "local"] = "local"
    image: str | None = None
    timeout_s: float | None = None
    api_key_env: str | None = Field(default=None, description="NAME of the env var holding the API key")
    limit_samples: int | None = None
    sample_seed: int | None = Field(default=None, description="with limit_samples: a random subset drawn with this "
                                    "seed where the harness can take one (builtin); elsewhere the first N")
    parallelism: int | None = None
    log_prefix: str = ""
    mounts: list[Mount] = Field(default_factory=list, description="extra read-only mounts (docker runtime)")
    env: list[str] = Field(default_factory=list, description="NAMES of host env vars passed to the harness")
    log_notes: list[str] = Field(default_factory=list, description="lines written first to the harness log")
    code_isolation: Literal["container", "bubblewrap", "unsandboxed"] | None = Field(
        default=None, description="the boundary model-written code runs behind (code_isolation.py); None: no "
        "model code. builtin: per sample; eval-factory + local + bubblewrap: the whole harness (harness_sandbox.py)")

    @field_validator("env")
    @classmethod
    def _env_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return names

    @property
    def eval_type(self) -> str:
        framework = self.harness if self.is_builtin else eval_factory.framework_name(self.harness)
        return f"{framework}.{self.task}"

    @property
    def is_builtin(self) -> bool:
        return self.harness == BUILTIN_HARNESS

    @property
    def sampling(self) -> str:
        """Which samples the harness evaluates (JUnit `nemo.sampling`): `all`, `first-n n=N`, or
        `seeded-random n=N seed=S`. eval-factory harnesses take the first N: lm-eval's `--samples` wants
        explicit document indices and refuses `--limit`, and its task's size is known only inside it."""
        return describe_sampling(self.harness, self.limit_samples, self.sample_seed)

    def resolved_image(self) -> str:
        """The image to run: explicit, else ours for the builtin harness, else eval-factory's."""
        if self.image:
            return self.image
        if self.is_builtin:
            return BUILTIN_IMAGE
        return eval_factory.image_for(self.harness)

    def all_overrides(self) -> dict[str, Any]:
        """User overrides plus limit/parallelism/API-key in NeMo Evaluator's `config.params` form."""
        merged: dict[str, Any] = {}
        if self.limit_samples is not None:
            merged["config.params.limit_samples"] = self.limit_samples
            if self.sample_seed is not None and self.is_builtin:  # `sampling` says what others do
                merged["config.params.sample_seed"] = self.sample_seed
        if self.parallelism is not None:
            merged["config.params.parallelism"] = self.parallelism
        if self.api_key_env:
            merged[eval_factory.API_KEY_NAME_OVERRIDE] = self.api_key_env  # the NAME, never the value
        merged.update(self.overrides)
        return merged

    def secret_env_names(self) -> list[str]:
        """Host variables whose VALUES the harness needs and no log may show: suite env, API key names."""
        names = list(self.env)
        for name in (self.api_key_env, self.all_overrides().get(eval_factory.API_KEY_NAME_OVERRIDE)):
            if name and str(name) not in names:
                names.append(str(name))
        return names


def describe_sampling(harness: str, limit_samples: int | None, sample_seed: int | None) -> str:
    """`HarnessInvocation.sampling` from its three inputs (the runner reports it without an invocation)."""
    if limit_samples is None:
        return "all"
    if sample_seed is not None and harness == BUILTIN_HARNESS:
        return f"seeded-random n={limit_samples} seed={sample_seed}"
    return f"first-n n={limit_samples}"


class HarnessEnvironment(BaseModel):
    """A run's environment: `public` values we set (shown in the logged command line),
    `secret_names` taken from the host by name (values masked in every log line)."""

    public: dict[str, str]
    secret_names: list[str]
    secret_values: list[str] = Field(repr=False)

    def values(self) -> dict[str, str]:
        return {**self.public, **{n: os.environ[n] for n in self.secret_names}}


def harness_environment(inv: HarnessInvocation, *, adapter_port: int) -> HarnessEnvironment:
    """What every harness run gets on top of its runtime's base: its own adapter port,
    nemo-evaluator telemetry off unless the user set a level, unbuffered Python output,
    and the host variables named by the suite (an unset one fails before anything starts)."""
    public = {
        eval_factory.ADAPTER_PORT_ENV: str(adapter_port),
        eval_factory.TELEMETRY_LEVEL_ENV: os.environ.get(eval_factory.TELEMETRY_LEVEL_ENV, eval_factory.TELEMETRY_OFF),
        "PYTHONUNBUFFERED": "1",
    }
    names = inv.secret_env_names()
    unset = [n for n in names if n not in os.environ]
    if unset:
        raise RuntimeUnavailable(
            f"Benchmark {inv.log_prefix.strip(' []') or inv.eval_type} passes the host environment variable(s) "
            f"{', '.join(unset)} to its harness (suite `env`, api_key_env or api_key_name), but they are not set "
            "on the host. Export them before running, or remove them from the suite."
        )
    for name in names:
        public.pop(name, None)
    return HarnessEnvironment(public=public, secret_names=names,
                              secret_values=[os.environ[n] for n in names if os.environ[n]])


def run_eval_args(inv: HarnessInvocation, *, output_dir: str) -> list[str]:
    """The `run_eval ...` arguments of NeMo Evaluator's CLI contract."""
    args = [
        "run_eval",
        "--eval_type", inv.eval_type,
        "--model_id", inv.model_id,
        "--model_url", inv.model_url,
        "--model_type", inv.model_type,
        "--output_dir", output_dir,
    ]
    overrides = inv.all_overrides()
    if overrides:
        args += ["--overrides", join_overrides(overrides)]
    return args


class RuntimeOutcome(BaseModel):
    """What a runtime reports back after the harness exited 0."""

    command: list[str]
    command_line: str = Field(description="the logged shell line that reproduces the run when pasted")
    image: str | None = None
    image_digest: str | None = None
