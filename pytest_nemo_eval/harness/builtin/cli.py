"""`nemo-eval-harness`: the builtin harness behind NeMo Evaluator's CLI contract.

    nemo-eval-harness run_eval --eval_type builtin.<task> --model_id ID --model_url URL \
        --model_type completions|chat --output_dir DIR [--overrides k=v,...]
    nemo-eval-harness ls

Overrides (NeMo Evaluator's `config.params.` prefix is accepted and ignored):
temperature, max_tokens (alias max_new_tokens), top_p, seed, limit_samples, sample_seed (with
limit_samples: a random subset drawn with this seed, in dataset order, instead of the first N),
parallelism, request_timeout, max_retries, task_spec (a YAML file to run instead
of a registered task), api_key_env, alias target.api_endpoint.api_key_name (NeMo
Evaluator's field) or target.api_endpoint.api_key (the NAME of the env var holding
the API key), code_isolation (auto | bubblewrap | container | unsandboxed: the
boundary model-written code runs behind, see isolation.py; auto refuses to run code
without a sandbox unless NEMO_EVAL_ALLOW_UNSANDBOXED_CODE=1).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import HarnessError, close_matches_hint
from ..overrides import split_overrides
from ..results import RESULTS_FILE, dump_results
from .client import ModelClient
from .early_stop import EarlyStop
from .isolation import IsolationRequest, resolve_isolation
from .runner import run_task
from .sample import GenerationParams
from .tasks import HARNESS_NAME, find_task, load_spec, task_names

_PREFIXES = ("config.params.extra.", "config.params.")
_ALIASES = {"max_new_tokens": "max_tokens", "target.api_endpoint.api_key": "api_key_env",
            "target.api_endpoint.api_key_name": "api_key_env",
            "request_timeout_s": "request_timeout"}


class RunOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    top_p: float | None = None
    seed: int | None = None
    limit_samples: int | None = Field(default=None, ge=1)
    sample_seed: int | None = None  # with limit_samples: a seeded random subset instead of the first N
    parallelism: int = Field(default=1, ge=1, le=256)
    request_timeout: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    task_spec: Path | None = None
    api_key_env: str | None = None
    code_isolation: IsolationRequest = "auto"
    # early stop (early_stop.py; the plugin sets these from the suite's `early_stop: true` and threshold)
    early_stop_metric: str | None = None
    early_stop_min: float | None = None
    early_stop_max: float | None = None
    early_stop_alpha: float = Field(default=0.05, gt=0, lt=1)


def parse_overrides(text: str | None) -> RunOverrides:
    """`k=v,k2=v2` -> RunOverrides; unknown keys name the close known ones."""
    values: dict[str, str] = {}
    for key, value in split_overrides(text):
        if value is None:
            raise HarnessError(f"--overrides item {key!r} is not key=value.")
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        key = _ALIASES.get(key, key)
        if key not in RunOverrides.model_fields:
            hint = close_matches_hint(key, RunOverrides.model_fields)
            raise HarnessError(
                f"Unknown override {key!r}.{hint} Known: {', '.join(RunOverrides.model_fields)}."
            )
        values[key] = value
    try:
        return RunOverrides.model_validate(values)
    except ValidationError as exc:
        raise HarnessError(f"Invalid --overrides: {exc}") from None


def _run_eval(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.overrides)
    task_name = args.eval_type.split(".", 1)[1] if args.eval_type.startswith(f"{HARNESS_NAME}.") else args.eval_type
    spec = load_spec(overrides.task_spec, name=task_name) if overrides.task_spec else find_task(args.eval_type)
    code_isolation = resolve_isolation(overrides.code_isolation) if spec.type == "code" else None
    api_key = None
    if overrides.api_key_env:
        api_key = os.environ.get(overrides.api_key_env)
        if api_key is None:
            raise HarnessError(f"API key variable {overrides.api_key_env!r} is not set in the environment.")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    client = ModelClient(
        args.model_url, args.model_id, args.model_type, api_key=api_key,
        request_timeout_s=overrides.request_timeout, max_retries=overrides.max_retries,
        pool_size=overrides.parallelism,
    )
    params = GenerationParams(
        temperature=overrides.temperature, max_tokens=overrides.max_tokens, top_p=overrides.top_p,
        seed=overrides.seed,
    )
    results = run_task(
        spec, client, output_dir=output_dir, params=params, limit_samples=overrides.limit_samples,
        sample_seed=overrides.sample_seed,
        parallelism=overrides.parallelism, log=lambda line: print(line, flush=True), code_isolation=code_isolation,
        early_stop=EarlyStop(metric=overrides.early_stop_metric, min=overrides.early_stop_min,
                             max=overrides.early_stop_max, alpha=overrides.early_stop_alpha)
        if overrides.early_stop_metric else None,
    )
    (output_dir / RESULTS_FILE).write_text(dump_results(results), encoding="utf-8")
    for key, score in results.flat_scores().items():
        stderr = f" ± {score.stats.stderr:.4f}" if score.stats.stderr is not None else ""
        print(f"{key} = {score.value:.4f}{stderr} (n={score.stats.count})", flush=True)
    print(f"wrote {output_dir / RESULTS_FILE}", flush=True)
    return 0


def _ls(args: argparse.Namespace) -> int:
    for name in task_names():
        print(name)
    return 0


def build_parser(prog: str = "nemo-eval-harness") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Builtin offline evaluation harness (NeMo Evaluator CLI).")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run_eval", help="run one task against a model endpoint, write results.yml")
    run.add_argument("--eval_type", required=True, help="builtin.<task> (see `ls`)")
    run.add_argument("--model_id", required=True)
    run.add_argument("--model_url", required=True, help="full endpoint URL, e.g. http://127.0.0.1:8000/v1/completions")
    run.add_argument("--model_type", choices=["completions", "chat"], default="completions")
    run.add_argument("--output_dir", required=True)
    run.add_argument("--overrides", default=None, help="k=v,k2=v2 (see module docstring)")
    run.set_defaults(handler=_run_eval)
    commands.add_parser("ls", help="list tasks, one harness.task per line").set_defaults(handler=_ls)
    return parser


def main(argv: list[str] | None = None, prog: str = "nemo-eval-harness") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return args.handler(args)
    except HarnessError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
