"""Resume: a finished benchmark's harness outcome is stored in the cache dir and reused by a later run
of the same inputs, so re-running a command after Ctrl-C, a CI timeout or `kill -9` redoes only what
had not finished (whose requests the response cache mostly answers).

The inputs that must match (`ResumeInputs`): the checkpoint's identity (the fingerprint in the cache
namespace, checkpoint/fingerprint.py), the benchmark's resolved config as far as it shapes the
harness's run (harness, task, params, adapter, limit, seed, ...: never its thresholds or gate, so a
re-gate with a changed threshold reuses the scores and judges them anew), the harness and its
version (this plugin's version, which pins the builtin harness and the eval-factory definitions, and
the distributions installed beside a local eval-factory harness, or the image's id in Docker), and the run's
sample limit. An errored benchmark is never stored, so never
reused; `--nemo-rerun` runs every benchmark afresh. Runs against `--nemo-endpoint` store nothing:
a URL says nothing about the weights behind it.

One JSON file per stored result under `<cache dir>/results/`, written to a temporary name and renamed
(atomic on POSIX), so a run killed mid-write or two runs sharing the folder never leave a half file
in its place. A file that is not a valid record of these inputs (corrupt, cut short, another
version) is a miss, with one warning naming it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from pytest_nemo_eval.runner.execute import HarnessOutcome, route_name, run_benchmark_harness

if TYPE_CHECKING:
    from pytest_nemo_eval.runner.plugin_state import NemoState
    from pytest_nemo_eval.runner.prerequisites import BenchmarkSetup
    from pytest_nemo_eval.suite import ResolvedBenchmark

RESULTS_DIR = "results"
RECORD_VERSION = 1
# ResolvedBenchmark fields that shape what the harness asks and scores (the rest judge, label or schedule)
RUN_FIELDS = ("suite_name", "name", "harness", "task", "endpoint_type", "params", "limit_samples", "adapter",
              "mounts", "env", "judge", "chat_template_kwargs", "seed", "max_request_errors", "max_truncated_share")


class NemoCacheWarning(UserWarning):
    """A cache or result file could not be used; the run treated it as a miss."""


class ResumeInputs(BaseModel):
    """What must be equal for a stored outcome to stand for a new run."""

    checkpoint: str  # the cache namespace: model id, format, iteration, fingerprint
    benchmark: dict[str, Any]
    harness: str
    harness_version: str
    runtime: str
    image: str | None
    limit_samples: int | None
    sample_seed: int | None = None  # --nemo-sample-seed: another subset of the samples
    harness_build: list[str] = []  # harness_build(): what the harness itself is made of, beyond our version

    def key(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


class StoredResult(BaseModel):
    """One finished benchmark's outcome and the inputs it was produced from."""

    version: int = RECORD_VERSION
    inputs: ResumeInputs
    outcome: HarnessOutcome
    # every score name -> the flat score it aliases: gate.short_names tells aliases apart by object identity,
    # which JSON does not keep
    aliases: dict[str, str] = {}
    output_dir: str  # where that run wrote its outputs (the files the outcome names)

    def restored(self) -> HarnessOutcome:
        """The outcome with each alias the same object as its flat score again."""
        outcome = self.outcome
        flat = outcome.flat_scores
        scores = {name: flat[self.aliases[name]] if self.aliases.get(name) in flat else score
                  for name, score in outcome.scores.items()}
        return outcome.model_copy(update={"scores": scores})


def aliases_of(outcome: HarnessOutcome) -> dict[str, str]:
    by_object = {id(score): key for key, score in outcome.flat_scores.items()}
    return {name: by_object[id(score)] for name, score in outcome.scores.items() if id(score) in by_object}


def resume_inputs(state: NemoState, benchmark: ResolvedBenchmark, setup: BenchmarkSetup) -> ResumeInputs | None:
    """The inputs of this run of `benchmark`; None when its results are not to be stored (endpoint runs)."""
    from pytest_nemo_eval import __version__

    target = state.target
    if target is None or not target.cache_namespace or not target.cache_dir:
        return None
    config = benchmark.model_dump(mode="json", include=set(RUN_FIELDS))
    return ResumeInputs(checkpoint=target.cache_namespace, benchmark=config, harness=benchmark.harness,
                        harness_version=__version__, runtime=setup.runtime, image=setup.image,
                        limit_samples=state.options.limit_samples or benchmark.limit_samples,
                        sample_seed=state.options.sample_seed,
                        harness_build=harness_build(benchmark.harness, setup.runtime, setup.image))


def harness_build(harness: str, runtime: str, image: str | None) -> list[str]:
    """What an eval-factory harness run is built from, beyond this plugin's version: run locally, every
    distribution installed beside its `nemo-evaluator` (an upgraded lm-eval or nemo-evaluator is another
    harness, whose scores may differ); in Docker, the image's id (a new image pushed under the same tag).
    The builtin harness is this plugin's own code: its version says it all."""
    if harness == "builtin":
        return []
    if runtime == "docker" and image:
        try:
            import docker

            return [f"image {docker.from_env().images.get(image).id}"]
        except Exception as exc:  # noqa: BLE001 - no id: the run is simply not reused
            return [f"image {image} (id unknown: {type(exc).__name__})"]
    from pytest_nemo_eval.harness.framework_definitions import evaluator_cli

    cli = evaluator_cli()
    if cli is None:
        return []
    venv = cli.resolve().parent.parent
    return sorted(path.name for path in venv.glob("lib/python*/site-packages/*.dist-info"))


class ResultStore:
    """`<cache dir>/results/<route>--<key>.json` files: load and save stored outcomes."""

    def __init__(self, cache_dir: Path) -> None:
        self.directory = Path(cache_dir) / RESULTS_DIR

    def path(self, route: str, inputs: ResumeInputs) -> Path:
        return self.directory / f"{route}--{inputs.key()[:32]}.json"

    def load(self, route: str, inputs: ResumeInputs) -> StoredResult | None:
        """The stored outcome of these inputs, or None (a bad file warns once, naming it)."""
        path = self.path(route, inputs)
        if not path.is_file():
            others = sorted(p.name for p in self.directory.glob(f"{glob_escape(route)}--*.json"))
            if others:
                warnings.warn(NemoCacheWarning(
                    f"{self.directory} holds results of {route} ({', '.join(others[:3])}) from other inputs (another "
                    "checkpoint, benchmark config, harness version, seed or limit): not reused, the benchmark runs."))
            return None
        try:
            stored = StoredResult.model_validate_json(path.read_bytes())
        except (OSError, ValidationError, ValueError) as exc:
            warnings.warn(NemoCacheWarning(
                f"result file {path} is unreadable or cut short ({type(exc).__name__}: {str(exc).splitlines()[0]}): "
                "treated as a miss, the benchmark runs (and replaces it). Delete the file to silence this."))
            return None
        if stored.version != RECORD_VERSION or stored.inputs != inputs:
            warnings.warn(NemoCacheWarning(
                f"result file {path} was written for other inputs (version {stored.version}): treated as a miss, "
                "the benchmark runs (and replaces it)."))
            return None
        return stored

    def save(self, route: str, inputs: ResumeInputs, outcome: HarnessOutcome, output_dir: str) -> Path:
        """Write atomically: a temporary file in the same folder, renamed over the record."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(route, inputs)
        record = StoredResult(inputs=inputs, outcome=outcome.model_copy(update={"reused_from": None}),
                              aliases=aliases_of(outcome), output_dir=output_dir)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(record.model_dump_json(indent=1))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def run_or_reuse(state: NemoState, benchmark: ResolvedBenchmark, setup: BenchmarkSetup,
                 code_isolation: str | None) -> HarnessOutcome:
    """The stored outcome of the same inputs (`reused_from` names its file), else a fresh harness run
    (stored once it finished without error). `BenchmarkError` as `run_benchmark_harness`."""
    state.start_local()  # the target knows the checkpoint's identity; nothing is deployed for it
    inputs = resume_inputs(state, benchmark, setup)
    store = ResultStore(Path(state.target.cache_dir)) if inputs is not None and state.target else None
    route = route_name(benchmark)
    if store is not None and inputs is not None and not state.options.rerun:
        stored = store.load(route, inputs)
        if stored is not None:
            return reused(stored, store.path(route, inputs))
    outcome = run_benchmark_harness(state, benchmark, setup.runtime, setup.image, code_isolation)
    if store is not None and inputs is not None and state.target is not None:
        try:
            store.save(route, inputs, outcome, state.target.output_dir)
        except OSError as exc:  # a full disk costs the resume, never the result
            warnings.warn(NemoCacheWarning(f"could not store {benchmark.id}'s result under {store.directory}: {exc}"))
    return outcome


def reused(stored: StoredResult, path: Path) -> HarnessOutcome:
    """The stored outcome, marked as reused; the files it names are kept only where they still exist."""
    outcome = stored.restored()
    files = {name: value if value and Path(value).exists() else None
             for name, value in (("samples_file", outcome.samples_file), ("results_file", outcome.results_file),
                                 ("proxy_log", outcome.proxy_log))}
    return outcome.model_copy(update={**files, "reused_from": str(path)})


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)

