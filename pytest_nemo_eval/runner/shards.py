"""`--nemo-shard I/N`: one suite split over N CI jobs, each with its own deployment, balanced by the
durations an earlier run recorded for each benchmark.

Why not a pytest sharding plugin: pytest-split (maintained, balances by duration) reads a
`.test_durations` file that its own `--store-durations` run writes per node id, so a sharded CI
would need a second bookkeeping of what our results already record (each benchmark's `duration_s`
in the JUnit / results JSON); pytest-shard (2020) splits by a hash of the node id, blind to
durations. Here the durations come from any earlier report (`--nemo-shard-durations`: a JUnit or
results JSON, e.g. the last merged run), and the shard is written into the run's provenance
(`nemo.shard`), which `nemo-eval-report merge` checks.

Split: longest-processing-time first (each item, longest first, goes to the least-loaded shard;
ties by benchmark id, then lowest shard): deterministic, so every shard (and every xdist worker of
a shard) computes the same split from the same inputs. Items without a recorded duration weigh the
median of the recorded ones (1 when none is recorded). Every collected item lands in exactly one
shard, Python tests too (they weigh by node id).
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from pathlib import Path
from typing import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

SHARD_PROPERTY = "nemo.shard"  # provenance: "I/N" of the shard that wrote the report
PLAN_PROPERTY = "nemo.shard.plan"  # provenance: sha256 of every collected item's key, before the split
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardSpec(BaseModel):
    """Shard `index` (1-based) of `count`."""

    model_config = ConfigDict(frozen=True)
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> ShardSpec:
    """`I/N` with 1 <= I <= N; ValueError with one paragraph naming the fix."""
    match = _SPEC.match(str(text))
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(
            f"shard {text!r} is not I/N with 1 <= I <= N (both whole numbers, shards counted from 1). Give each "
            "of N CI jobs one of 1/N, 2/N ... N/N, e.g. --nemo-shard 2/3 for the second of three jobs.")
    return ShardSpec(index=int(match.group(1)), count=int(match.group(2)))


def recorded_durations(path: Path) -> dict[str, float]:
    """`benchmark id -> seconds` from an earlier run's results JSON or JUnit XML (errored and skipped
    benchmarks left out: their time says nothing about a full run)."""
    from pytest_nemo_eval.results import RunResult

    if not path.is_file():
        raise ValueError(f"--nemo-shard-durations {path} does not exist. Pass the JUnit XML or results JSON of "
                         "an earlier run of the same suite (e.g. the merged report of the last sharded run), or "
                         "drop the option to weigh every benchmark the same.")
    try:
        if path.suffix == ".json":
            run = RunResult.read_json(path)
        else:
            from pytest_nemo_eval.report.junit import read_reports

            run = read_reports([path])
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--nemo-shard-durations {path} cannot be read ({str(exc).splitlines()[0]}). Pass the JUnit "
                         "XML or results JSON an earlier run wrote.") from None
    return {r.benchmark: r.duration_s for r in run.benchmarks
            if r.duration_s is not None and r.status in ("passed", "failed")}


def assign(keys: Sequence[str], durations: dict[str, float], count: int) -> list[int]:
    """The shard (0-based) of each key: longest first onto the least-loaded shard."""
    known = [durations[k] for k in keys if k in durations]
    default = statistics.median(known) if known else 1.0
    weight = {k: durations.get(k, default) for k in keys}
    loads = [0.0] * count
    shard_of: dict[str, int] = {}
    for key in sorted(set(keys), key=lambda k: (-weight[k], k)):
        target = min(range(count), key=lambda i: (loads[i], i))
        shard_of[key] = target
        loads[target] += weight[key]
    return [shard_of[k] for k in keys]


def item_key(item) -> str:
    """A benchmark's id (what reports record durations by), else the test's node id."""
    benchmark = getattr(item, "benchmark", None)
    return getattr(benchmark, "id", None) or item.nodeid


def split(items: Iterable, spec: ShardSpec, durations: dict[str, float]) -> tuple[list, list]:
    """(kept, deselected) for shard `spec`."""
    items = list(items)
    shards = assign([item_key(i) for i in items], durations, spec.count)
    kept = [i for i, s in zip(items, shards) if s == spec.index - 1]
    return kept, [i for i, s in zip(items, shards) if s != spec.index - 1]


class ShardSelector:
    """The pytest hook that keeps this shard's items (registered by plugin.activate when a shard is asked)."""

    def __init__(self, spec: ShardSpec, durations_file: Path | None) -> None:
        self.spec = spec
        self.durations = recorded_durations(durations_file) if durations_file else {}
        self.plan: str | None = None  # set where this process collects (serial run; not an xdist controller)

    def pytest_collection_modifyitems(self, config, items: list) -> None:
        self.plan = hashlib.sha256("\n".join(sorted(item_key(i) for i in items)).encode()).hexdigest()
        kept, dropped = split(items, self.spec, self.durations)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = kept

    def pytest_report_header(self, config) -> str:
        return f"nemo-eval: shard {self.spec} (balanced by {len(self.durations)} recorded durations)"


SELECTOR_NAME = "nemo-eval-shard"


def register(config, shard: str | None, durations_file: Path | None) -> None:
    """Register the `ShardSelector` when the run's settings ask for a shard; a bad durations file is a
    usage error before anything is collected or deployed."""
    import pytest

    if not shard or config.pluginmanager.has_plugin(SELECTOR_NAME):
        return
    try:
        selector = ShardSelector(parse_shard(shard), durations_file)
    except ValueError as exc:
        raise pytest.UsageError(f"pytest-nemo-eval: {exc}") from None
    config.pluginmanager.register(selector, SELECTOR_NAME)


def provenance(config) -> dict[str, str]:
    """`nemo.shard` (and the plan, where this process collected) for the run's provenance; {} unsharded."""
    selector = config.pluginmanager.get_plugin(SELECTOR_NAME)
    if selector is None:
        return {}
    return {SHARD_PROPERTY: str(selector.spec), **({PLAN_PROPERTY: selector.plan} if selector.plan else {})}
