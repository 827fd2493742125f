"""Typed view of a harness's `results.yml` (NeMo Evaluator's layout).

    results:
      tasks:  {<task>:  {metrics: {<metric>: {scores: {<score>: {value, stats: {count, mean, stderr, ...}}}}}}}
      groups: {<group>: {metrics: ...}}

Eval-factory images and our builtin harness both write this file; the plugin
reads it only through `load_results`, so a missing or malformed file always
becomes a `ResultsError` carrying the tail of the harness log.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ResultsError, with_log_tail

RESULTS_FILE = "results.yml"
HARNESS_LOG_FILE = "harness.log"


class ScoreStats(BaseModel):
    """Sample statistics of a score; harnesses add their own keys, which are kept."""

    model_config = ConfigDict(extra="allow")
    count: int | None = None
    mean: float | None = None
    stderr: float | None = None
    stddev: float | None = None
    sum: float | None = None


class Score(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: float
    stats: ScoreStats = Field(default_factory=ScoreStats)


class Metric(BaseModel):
    model_config = ConfigDict(extra="allow")
    scores: dict[str, Score] = Field(default_factory=dict)


class TaskResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    metrics: dict[str, Metric] = Field(default_factory=dict)


class EvalResults(BaseModel):
    """All scores of one harness run: tasks and groups."""

    model_config = ConfigDict(extra="allow")
    tasks: dict[str, TaskResult] = Field(default_factory=dict)
    groups: dict[str, TaskResult] = Field(default_factory=dict)
    harness_task: str | None = Field(
        default=None, exclude=True,
        description="the task the harness itself ran (eval-factory's `config.params.task`, e.g. `mmlu_str` "
                    "for eval type `mmlu`): the results are named after it, not after the eval type",
    )

    def flat_scores(self) -> dict[str, Score]:
        """Every score keyed '<task-or-group>.<metric>.<score>' (tasks first; a group never shadows a task)."""
        flat: dict[str, Score] = {}
        for section in (self.groups, self.tasks):
            for task_name, task in section.items():
                for metric_name, metric in task.metrics.items():
                    for score_name, score in metric.scores.items():
                        flat[f"{task_name}.{metric_name}.{score_name}"] = score
        return flat

    def get_score(self, metric: str, *, task: str | None = None, score: str | None = None) -> Score:
        """The one score of `metric` (optionally narrowed by task and score name).

        Raises KeyError listing what is available when there is no match or the
        match is ambiguous, so a suite typo shows the real names.
        """
        candidates = {
            key: value
            for key, value in self.flat_scores().items()
            if _matches(key, task=task, metric=metric, score=score)
        }
        if len(candidates) == 1:
            return next(iter(candidates.values()))
        # eval-factory usually names the single score after its metric: prefer that one
        same_name = {k: v for k, v in candidates.items() if k.rsplit(".", 1)[-1] == metric}
        if score is None and len(same_name) == 1:
            return next(iter(same_name.values()))
        available = ", ".join(sorted(self.flat_scores())) or "(none)"
        what = "ambiguous" if candidates else "not found"
        raise KeyError(
            f"score for metric {metric!r} (task={task!r}, score={score!r}) {what} in results; "
            f"available task.metric.score names: {available}"
        )


def _matches(key: str, *, task: str | None, metric: str, score: str | None) -> bool:
    task_name, metric_name, score_name = _split_key(key)
    return (
        metric_name == metric
        and (task is None or task_name == task)
        and (score is None or score_name == score)
    )


def _split_key(key: str) -> tuple[str, str, str]:
    rest, score_name = key.rsplit(".", 1)
    task_name, metric_name = rest.rsplit(".", 1) if rest.count(".") else ("", rest)
    return task_name, metric_name, score_name


def parse_results(document: object, *, source: str = RESULTS_FILE) -> EvalResults:
    """Validate a loaded results document (top-level key `results`)."""
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
        raise ResultsError(
            f"{source} has no top-level 'results' mapping; expected "
            "results: {tasks: {<task>: {metrics: {<metric>: {scores: {<score>: {value: ...}}}}}}}. "
            "The harness probably crashed while writing it or is not a NeMo Evaluator harness."
        )
    try:
        results = EvalResults.model_validate(document["results"])
    except ValidationError as exc:
        raise ResultsError(f"{source} does not match the results.yml schema: {exc}") from exc
    for key, score in results.flat_scores().items():
        if math.isnan(score.value):
            raise ResultsError(f"{source}: score {key} is NaN; the harness produced no usable value for it.")
    if not results.tasks and not results.groups:
        raise ResultsError(f"{source} lists no tasks and no groups: the harness ran but scored nothing.")
    params = (document.get("config") or {}).get("params") if isinstance(document.get("config"), dict) else None
    if isinstance(params, dict) and isinstance(params.get("task"), str):
        results.harness_task = params["task"]
    return results


def load_results(output_dir: Path, *, log_path: Path | None = None) -> EvalResults:
    """Read `<output_dir>/results.yml`; errors carry the last lines of the harness log.

    `log_path` defaults to `<output_dir>/harness.log`, where both runtimes write.
    """
    output_dir = Path(output_dir)
    log_path = log_path if log_path is not None else output_dir / HARNESS_LOG_FILE
    path = output_dir / RESULTS_FILE
    if not path.is_file():
        raise ResultsError(with_log_tail(
            f"The harness wrote no {RESULTS_FILE} in {output_dir}. It either failed before scoring "
            "or wrote its results elsewhere; check the log below and that --output_dir reached it.",
            log_path,
        ))
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ResultsError(with_log_tail(f"{path} is not valid YAML: {exc}", log_path)) from exc
    try:
        return parse_results(document, source=str(path))
    except ResultsError as exc:
        raise ResultsError(with_log_tail(str(exc), log_path)) from exc


def dump_results(results: EvalResults) -> str:
    """results.yml text for `results` (used by the builtin harness)."""
    return yaml.safe_dump({"results": results.model_dump(exclude_none=True)}, sort_keys=False)
