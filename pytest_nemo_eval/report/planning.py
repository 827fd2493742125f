"""`nemo-eval-report plan --baseline gate.xml --max-drop 0.01`: how many samples each benchmark needs for the
gate to decide at that margin, from the baseline's own per-item variance.

A candidate that did not change should get GO: the upper end of the drop's interval, drop + z_{1-a/2} se,
must fall below the margin. With per-item standard deviation s (the baseline's: from its per-sample file,
else stderr * sqrt(count)) and a candidate sampled independently of it, se = s sqrt(2 / n), so GO comes
with probability `power` when

    n >= 2 s^2 (z_{1-a/2} + z_{power})^2 / margin^2.

Paired per-sample files lower the need by the runs' correlation (se^2 = 2 s^2 (1 - rho) / n): the
figure is the conservative one, rho = 0, the only one the baseline alone can give.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from statistics import NormalDist

from pytest_nemo_eval.report.junit import ReportError, read_reports
from pytest_nemo_eval.report.table import render
from pytest_nemo_eval.results import BenchmarkResult
from pytest_nemo_eval.samples import SamplesError, read_samples, samples_dir_beside

PLAN_HEADER = ("benchmark", "metric", "baseline", "per-item sd", "items now", "items needed", "decides now?")


def samples_needed(sd: float, margin: float, confidence: float = 0.95, power: float = 0.8) -> int:
    """Items per run for GO with probability `power` when nothing changed (module docstring)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2) + NormalDist().inv_cdf(power)
    return max(1, math.ceil(2 * sd * sd * z * z / (margin * margin)))


def per_item_sd(result: BenchmarkResult, metric: str, report: Path | None = None) -> tuple[float, int] | None:
    """(sd, items) of one metric: the per-sample file's scores (the copy kept beside `report` first, as
    report/baseline.py reads it), else stderr * sqrt(count)."""
    if result.samples_file:
        kept = samples_dir_beside(report) / Path(result.samples_file).name if report is not None else None
        path = kept if kept is not None and kept.is_file() else Path(result.samples_file)
        try:
            scores = [s for r in read_samples(path).values() if (s := r.score(metric)) is not None]
        except SamplesError:
            scores = []
        if len(scores) > 1:
            n, mean = len(scores), sum(scores) / len(scores)
            sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
            if sd == 0 and all(0 <= s <= 1 for s in scores):  # all alike: a rerun may still differ; the
                shrunk = (sum(scores) + 0.5) / (n + 1)  # variance of a proportion pulled half an item inward
                sd = math.sqrt(shrunk * (1 - shrunk))
            return sd, n
    m = result.metrics[metric]
    count = m.count or result.samples
    if m.stderr is not None and count:
        return m.stderr * math.sqrt(count), count
    return None


def plan_main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, metavar="BASE.xml", help="JUnit report of the baseline run")
    parser.add_argument("--max-drop", type=float, required=True, help="the margin the gate will judge at")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--power", type=float, default=0.8, help="chance of GO for an unchanged model")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    args = parser.parse_args(argv)
    if args.max_drop <= 0 or not 0 < args.confidence < 1 or not 0 < args.power < 1:
        print(f"{prog}: --max-drop must be > 0, --confidence and --power in (0, 1).", file=sys.stderr)
        return 2
    try:
        results = read_reports([args.baseline]).by_benchmark()
    except (ReportError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    rows: list[tuple[str, ...]] = []
    for bid, result in results.items():
        if result.status == "error":
            continue
        for metric in sorted(result.metrics):
            found = per_item_sd(result, metric, Path(args.baseline))
            if found is None:
                rows.append((bid, metric, f"{result.metrics[metric].value:.4f}", "-", "-", "-", "no stderr or samples"))
                continue
            sd, items = found
            need = samples_needed(sd, args.max_drop, args.confidence, args.power)
            rows.append((bid, metric, f"{result.metrics[metric].value:.4f}", f"{sd:.4f}", str(items), str(need),
                         "yes" if items >= need else f"no: {need / items:.1f}x the items"))
    if not rows:
        print(f"{prog}: no benchmark with scores in {args.baseline}", file=sys.stderr)
        return 2
    print(render(rows, args.format, header=PLAN_HEADER))
    print(f"\nitems per run for GO with {args.power:.0%} power when nothing changed, margin {args.max_drop:g}, "
          f"{args.confidence:.0%} interval; runs paired on per-sample files need fewer (by their correlation)")
    return 0
