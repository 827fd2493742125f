"""Run one task over its dataset with a thread pool; aggregate scores with their standard errors."""

from __future__ import annotations

import functools
import json
import math
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..results import EvalResults, Metric, Score, ScoreStats, TaskResult
from . import code_generation, exact_match, multiple_choice, tool_call
from .client import ModelClient
from .dataset import load_jsonl
from .early_stop import EarlyStop, EarlyStopper
from .isolation import Isolation, resolve_isolation
from .sample import GenerationParams, SampleOutcome

SCORERS = {"exact_match": exact_match, "multiple_choice": multiple_choice, "code": code_generation,
           "tool_call": tool_call}


def subset(records: list, limit: int, seed: int | None) -> list:
    """The first `limit` records, or with a seed `limit` drawn at random (the same for the same seed and
    dataset, whatever the platform: `random.Random` is specified), kept in dataset order. An unbiased
    subset, unlike the first N of a dataset sorted by source or difficulty (lm-eval #2598)."""
    if seed is None or limit >= len(records):
        return records[:limit]
    chosen = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in chosen]


def samples_file(output_dir: Path, task_name: str) -> Path:
    return Path(output_dir) / f"samples_{task_name}.jsonl"


def run_task(
    spec,
    client: ModelClient,
    *,
    output_dir: Path,
    params: GenerationParams,
    limit_samples: int | None = None,
    sample_seed: int | None = None,
    parallelism: int = 1,
    log: Callable[[str], None] = print,
    code_isolation: Isolation | None = None,
    early_stop: EarlyStop | None = None,
) -> EvalResults:
    """Score every record (or `limit_samples` of them: the first, or a random subset drawn with
    `sample_seed`), write per-sample JSONL, return the results.

    Code tasks run their samples at `code_isolation` (default: `resolve_isolation("auto")`,
    which raises `NoSandbox` before any request when no boundary can be made and nobody opted in).
    With `early_stop` the samples stop as soon as its metric's verdict is settled (early_stop.py).
    """
    scorer = SCORERS[spec.type]
    score = scorer.score
    if spec.type == "code":
        isolation = code_isolation or resolve_isolation("auto")
        log(f"task {spec.name}: model-written code runs under isolation {isolation}")
        score = functools.partial(scorer.score, isolation=isolation)
    records = load_jsonl(spec.data_path(), [spec.id_field, *scorer.required_fields(spec)])
    if limit_samples is not None:
        records = subset(records, limit_samples, sample_seed)
    how = f", seeded random subset (seed {sample_seed})" if limit_samples is not None and sample_seed is not None \
        else ""
    log(f"task {spec.name}: {len(records)} samples{how}, type {spec.type}, parallelism {parallelism}")
    started = time.monotonic()
    outcomes: list[SampleOutcome] = []
    pool = ThreadPoolExecutor(max_workers=max(1, parallelism), thread_name_prefix="sample")
    try:
        # map keeps dataset order; the first exception (endpoint down, bad record) aborts the run
        stopper = EarlyStopper(early_stop, scorer.METRICS) if early_stop is not None else None
        for index, outcome in enumerate(pool.map(lambda r: score(spec, client, r, params), records), 1):
            outcomes.append(outcome)
            if index % max(1, len(records) // 10) == 0 or index == len(records):
                log(f"task {spec.name}: {index}/{len(records)} samples scored")
            if stopper is not None and stopper.observe(outcome.scores):
                break  # the pool's shutdown below cancels the samples not started
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # do not keep querying after a failure
    elapsed = time.monotonic() - started
    log(f"task {spec.name}: done in {elapsed:.1f} s ({len(records) / max(elapsed, 1e-9):.1f} samples/s)")
    if stopper is not None:
        log(f"task {spec.name}: {stopper.write(output_dir, planned=len(records)).describe()}")
    with samples_file(output_dir, spec.name).open("w", encoding="utf-8") as handle:
        for outcome in outcomes:
            handle.write(json.dumps(outcome.model_dump(), ensure_ascii=False) + "\n")
    metrics = {name: _metric(name, [o.scores[name] for o in outcomes]) for name in scorer.METRICS}
    return EvalResults(tasks={spec.name: TaskResult(metrics=metrics)})


def _metric(name: str, values: list[float]) -> Metric:
    """Mean with the standard error of the mean (sample stddev / sqrt(n))."""
    count = len(values)
    mean = sum(values) / count
    stddev = math.sqrt(sum((v - mean) ** 2 for v in values) / (count - 1)) if count > 1 else None
    stderr = stddev / math.sqrt(count) if stddev is not None else None
    stats = ScoreStats(count=count, mean=mean, stderr=stderr, stddev=stddev, sum=sum(values))
    return Metric(scores={name: Score(value=mean, stats=stats)})
