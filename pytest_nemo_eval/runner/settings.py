"""`NemoOptions`: the validated settings of one run (option > env var > ini key > default)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pytest_nemo_eval.runner.options import FLAGS, SETTINGS, dest_name, env_name


class NemoOptions(BaseModel):
    """Validated settings of one pytest run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: str | None = None
    endpoint: str | None = None
    api_key_env: str | None = None
    model_id: str | None = None
    runtime: Literal["docker", "local", "auto"] | None = None
    limit_samples: int | None = Field(default=None, gt=0)
    output_dir: Path = Path(".nemo-eval")
    cache: Literal["reuse", "refresh", "off"] = "reuse"
    cache_dir: Path | None = None  # None: <output_dir>/cache
    rerun: bool = False
    baseline: Path | None = None
    baseline_tolerance: float | None = Field(default=None, ge=0)  # deprecated alias of gate_max_drop
    gate_max_drop: float | None = Field(default=None, ge=0)
    gate_lenient: bool = False
    max_batch_size: int = Field(default=16, gt=0)
    tensor_parallel: int = Field(default=1, gt=0)
    pipeline_parallel: int = Field(default=1, gt=0)
    serving_backend: Literal["pytriton", "ray"] = "pytriton"
    replicas: int = Field(default=1, gt=0)
    replica_cpus: float = Field(default=1.0, gt=0)
    ray_address: str | None = None
    tool_parser: str | None = None
    reasoning_parser: str | None = None
    startup_timeout: float = Field(default=600.0, gt=0)
    progress_interval: float = Field(default=30.0, ge=0)
    shard: str | None = None  # "I/N", checked by runner/shards.parse_shard
    shard_durations: Path | None = None
    sample_seed: int | None = None
    allow_unsandboxed_code: bool = False
    mlflow_uri: str | None = None
    mlflow_experiment: str = "pytest-nemo-eval"

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        from pytest_nemo_eval.runner.shards import parse_shard

        return str(parse_shard(value)) if value is not None else None

    @property
    def resolved_cache_dir(self) -> Path:
        """Where the response cache and the finished results live (kept across runs)."""
        return (self.cache_dir or self.output_dir / "cache").expanduser().resolve()

    @property
    def wants_target(self) -> bool:
        """A checkpoint or an endpoint was asked for: the run uses the model."""
        return bool(self.checkpoint or self.endpoint)

    def serving_problem(self) -> str | None:
        """Why the serving options cannot work together (a usage error before anything starts), or None."""
        from pytest_nemo_eval.serving.backend import backend_missing

        if self.serving_backend != "ray" and self.replicas != 1:
            return (f"--nemo-replicas {self.replicas} needs --nemo-serving-backend ray; the pytriton backend serves "
                    "one copy of the model.")
        if self.serving_backend != "ray" and self.ray_address:
            return (f"--nemo-ray-address {self.ray_address} needs --nemo-serving-backend ray (the serving backend "
                    f"is {self.serving_backend}).")
        if self.serving_backend == "ray" and self.endpoint:
            return ("--nemo-serving-backend ray deploys a checkpoint; --nemo-endpoint evaluates a running server. "
                    "Drop one of them.")
        return backend_missing(self.serving_backend)

    def target_problem(self) -> str | None:
        """Why the checkpoint/endpoint settings cannot be used, or None."""
        if self.checkpoint and self.endpoint:
            return (
                f"Both --nemo-checkpoint ({self.checkpoint}) and --nemo-endpoint ({self.endpoint}) are set "
                "(by option, NEMO_EVAL_* environment variable or ini key). Give exactly one: a checkpoint "
                "to deploy, or a running endpoint to evaluate."
            )
        if not self.wants_target:
            return (
                "No model to evaluate: the run collected benchmarks but neither --nemo-checkpoint nor "
                "--nemo-endpoint is set. Pass --nemo-checkpoint=PATH (a NeMo 2.0 checkpoint directory, or "
                "`demo` for the bundled demo model) or --nemo-endpoint=URL of a running OpenAI-compatible server."
            )
        return None


def read_options(config: pytest.Config) -> NemoOptions:
    """Merge option > env > ini; a bad value raises `pytest.UsageError` naming the setting."""
    values: dict[str, Any] = {}
    for name in [setting[0] for setting in SETTINGS] + [flag[0] for flag in FLAGS]:
        dest = dest_name(name)
        value = config.getoption(dest, default=None)
        if value is None:
            value = os.environ.get(env_name(name)) or None
        if value is None:
            value = config.getini(f"nemo_{dest}") or None
        if value is not None:
            values[dest] = value
    try:
        options = NemoOptions.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"--nemo-{str(err['loc'][0]).replace('_', '-')}={values.get(str(err['loc'][0]))!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise pytest.UsageError(f"pytest-nemo-eval: invalid setting(s): {problems}.") from None
    problem = options.serving_problem()
    if problem:
        raise pytest.UsageError(f"pytest-nemo-eval: {problem}")
    if options.baseline_tolerance is not None:
        config.issue_config_time_warning(NemoDeprecatedOption(
            f"--nemo-baseline-tolerance={options.baseline_tolerance:g} is deprecated: it now sets the baseline "
            "gate's margin, as --nemo-gate-max-drop does (docs/concepts/gate-policy.md); use that instead."),
            stacklevel=2)
        if options.gate_max_drop is None:
            options = options.model_copy(update={"gate_max_drop": options.baseline_tolerance})
    return options


class NemoDeprecatedOption(FutureWarning):
    """A setting kept working under an old name."""
