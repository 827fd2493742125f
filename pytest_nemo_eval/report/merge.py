"""`nemo-eval-report merge`: the reports of a suite's shards (`--nemo-shard I/N`, one CI job each) as
ONE run: one JUnit file, its results JSON twin, then the usual report on it (table, one baseline gate,
HTML, one MLflow run), so a sharded gate decides exactly as one serial run would.

    nemo-eval-report merge shard-*/gate.xml -o gate.xml [--baseline last.xml] [--html gate.html] [--mlflow URI]

Refused with exit 2 and one paragraph (a merged gate must never mix runs): shards of different
checkpoints (or endpoints/models), of different suite files (a suite's sha256, or the collected items'
plan, differ), a shard twice or one missing, and a benchmark reported by two files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from pytest_nemo_eval.report.junit import ReportError, read_reports
from pytest_nemo_eval.results import RunResult
from pytest_nemo_eval.runner.shards import PLAN_PROPERTY, SHARD_PROPERTY, parse_shard

IDENTITY = ("nemo.checkpoint_sha256", "nemo.endpoint", "nemo.model_id")  # which model: must agree
SHARDS_PROPERTY = "nemo.shards"  # the merged run: how many shards it was made of


class MergeError(ValueError):
    """Reports that cannot be one run."""


def _read(path: Path) -> RunResult:
    """A shard's run: its results JSON twin when present (every field), else the JUnit file."""
    twin = path.with_name(path.stem + ".results.json")
    junit = read_reports([path])  # read anyway: a file that is no JUnit fails here, naming it
    if twin.is_file():
        try:
            return RunResult.read_json(twin)
        except ValueError:  # a corrupt twin: the JUnit file holds the gate's facts too
            print(f"nemo-eval-report merge: ignoring unreadable {twin}; reading {path}", file=sys.stderr)
    return junit


def _check(runs: dict[Path, RunResult]) -> None:
    """MergeError naming the files when the runs are not shards of one run of one model."""
    def differs(key: str) -> dict[str, str] | None:
        values = {str(p): r.provenance[key] for p, r in runs.items() if key in r.provenance}
        return values if len(set(values.values())) > 1 else None

    for key in IDENTITY:
        if values := differs(key):
            raise MergeError(
                f"The reports are of different models ({key}: " + "; ".join(f"{p}: {v}" for p, v in values.items())
                + "). Merge only the shards of one run of one checkpoint; re-run the odd shard against the same "
                "checkpoint.")
    suites = sorted({k for r in runs.values() for k in r.provenance if k.startswith("nemo.suite.")
                     and k.endswith(".sha256")})
    for key in [*suites, PLAN_PROPERTY]:
        if values := differs(key):
            what = key.removeprefix("nemo.suite.").removesuffix(".sha256") if key != PLAN_PROPERTY else "collected"
            raise MergeError(
                f"The reports ran different suites ({what!r} differs: "
                + "; ".join(f"{p}: {v[:16]}" for p, v in values.items())
                + "). Every shard must run the same suite files, options and commit; re-run the odd shard.")
    specs = {p: r.provenance.get(SHARD_PROPERTY) for p, r in runs.items()}
    if any(specs.values()):
        unsharded = [str(p) for p, s in specs.items() if not s]
        if unsharded:
            raise MergeError(f"{', '.join(unsharded)} {'is' if len(unsharded) == 1 else 'are'} not a shard (no "
                             f"{SHARD_PROPERTY} in its provenance) while the others are. Merge the files of one "
                             "--nemo-shard run only.")
        parsed = {p: parse_shard(s) for p, s in specs.items() if s}
        counts = {s.count for s in parsed.values()}
        if len(counts) > 1:
            raise MergeError("The shards split the suite differently (" + "; ".join(
                f"{p}: {s}" for p, s in parsed.items()) + "). Merge the N shards of one --nemo-shard I/N run.")
        count = counts.pop()
        seen: dict[int, Path] = {}
        for path, spec in parsed.items():
            if spec.index in seen:
                raise MergeError(f"Shard {spec} is given twice ({seen[spec.index]} and {path}). Pass each shard's "
                                 "report once.")
            seen[spec.index] = path
        missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in seen]
        if missing:
            raise MergeError(f"Shard(s) {', '.join(missing)} missing: the merged gate would skip their benchmarks. "
                             "Pass every shard's report (a failed CI job's too: its JUnit file says what failed).")
    owner: dict[str, Path] = {}
    for path, run in runs.items():
        for result in run.benchmarks:
            if result.benchmark in owner:
                raise MergeError(f"Benchmark {result.benchmark} is in both {owner[result.benchmark]} and {path}: "
                                 "the shards overlap. Shards of one run never share a benchmark; merge those of "
                                 "one run.")
            owner[result.benchmark] = path


def merged_provenance(runs: list[RunResult]) -> dict[str, str]:
    """The first shard's provenance; deployments summed, the earliest start, the shard count."""
    facts: dict[str, str] = {}
    for run in runs:
        for key, value in run.provenance.items():
            facts.setdefault(key, value)
    facts.pop(SHARD_PROPERTY, None)
    facts["nemo.deployments"] = str(sum(int(r.provenance.get("nemo.deployments", "0") or 0) for r in runs))
    starts = [r.provenance["nemo.started"] for r in runs if "nemo.started" in r.provenance]
    if starts:
        facts["nemo.started"] = min(starts)
    facts[SHARDS_PROPERTY] = str(len(runs))
    return dict(sorted(facts.items()))


def merge(paths: list[Path], output: Path) -> RunResult:
    """Check the shards, write the merged JUnit file and its results JSON twin; the merged run."""
    from junitparser import JUnitXml, TestSuite

    runs = {path: _read(path) for path in paths}
    _check(runs)
    run = RunResult(provenance=merged_provenance(list(runs.values())),
                    benchmarks=[b for r in runs.values() for b in r.benchmarks])
    suite = TestSuite("pytest")
    for key, value in run.provenance.items():
        suite.add_property(key, value)
    for path in paths:
        xml = JUnitXml.fromfile(str(path))
        for part in [xml] if isinstance(xml, TestSuite) else list(xml):
            for case in part:
                suite.add_testcase(case)
    merged = JUnitXml()
    merged.add_testsuite(suite)
    merged.update_statistics()
    output.parent.mkdir(parents=True, exist_ok=True)
    merged.write(str(output), pretty=True)
    run.write_json(output.with_name(output.stem + ".results.json"))
    return run


def merge_main(argv: list[str], prog: str, report_main: Callable[[list[str], str], int]) -> int:
    """`merge` subcommand: merge, then `report_main` on the merged file with the remaining options."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="each shard's JUnit XML (its .results.json twin is read too)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.xml",
                        help="the merged JUnit file (its results JSON twin is written beside it)")
    args, rest = parser.parse_known_args(argv)
    paths = [Path(p) for p in args.reports]
    try:
        run = merge(paths, Path(args.output))
    except (MergeError, ReportError, OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    print(f"{prog}: {len(paths)} report(s), {len(run.benchmarks)} benchmark(s) -> {args.output}", file=sys.stderr)
    return report_main([args.output, *rest], prog.removesuffix(" merge"))
