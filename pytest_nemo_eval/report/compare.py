"""`nemo-eval-report compare OLD.xml NEW.xml [--show-flips] [--html OUT.html]`: two runs side by side by hand.

The same decisions as `nemo-eval-report NEW.xml --baseline OLD.xml` (each metric's GO / NO-GO /
INCONCLUSIVE under the recorded gate policy, Holm or BH over the run), and with `--show-flips` every item
that flipped between the runs with its prompt, the expected answer and both responses (read from the two
runs' per-sample files), in the terminal and in the HTML report. Exit 1 on a failing NO-GO, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys

from pytest_nemo_eval.report.baseline import Baseline
from pytest_nemo_eval.report.comparison import COMPARE_HEADER, comparison_table, judge_run, undecided, write_html_if_asked
from pytest_nemo_eval.report.junit import ReportError, read_reports
from pytest_nemo_eval.report.table import render
from pytest_nemo_eval.results import RunResult


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="JUnit report of the earlier run (the baseline)")
    parser.add_argument("new", help="JUnit report of the run to judge")
    parser.add_argument("--show-flips", action="store_true", help="list the items that flipped, with both answers")
    parser.add_argument("--html", metavar="OUT.html", help="also write the HTML report (flipped items included)")
    parser.add_argument("--max-drop", type=float, default=None, help="the margin (default: each recorded policy)")
    parser.add_argument("--lenient", action="store_true", help="a supporting benchmark's NO-GO does not fail")
    parser.add_argument("--correction", choices=("holm", "bh"), default=None)
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    return parser


def compare_main(argv: list[str], prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    if args.max_drop is not None and args.max_drop < 0:
        print(f"{prog}: --max-drop must be >= 0.", file=sys.stderr)
        return 2
    try:
        report = read_reports([args.new])
        baseline = Baseline(args.old, max_drop=args.max_drop, lenient=args.lenient)
    except (ReportError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    results = report.by_benchmark()
    if not results:
        print(f"{prog}: no nemo-eval benchmark found in {args.new}", file=sys.stderr)
        return 2
    run, compared = judge_run(report, baseline, args.correction, args.lenient)
    table, regressed, notes = comparison_table(compared)
    print(render(table, args.format, header=COMPARE_HEADER))
    print()
    for note in notes:
        print(note)
    if args.show_flips:
        print(flips_text(run))
    if write_html_if_asked(args.html, run, prog):
        return 2
    print(f"{len(regressed)} regression(s), {undecided(compared)} inconclusive: {args.new} versus {args.old}")
    return 1 if regressed else 0


def flips_text(run: RunResult) -> str:
    """Every flipped item of every paired comparison: id, prompt, expected, both responses."""
    from pytest_nemo_eval.report.html import flipped_samples

    blocks = []
    for result in run.benchmarks:
        for metric, way, views in flipped_samples(result):
            blocks.append(f"\n{result.benchmark} {metric}: items that got {way}")
            for v in views:
                blocks.append(f"  {v.item_id}: prompt {_one_line(v.prompt)} | expected {_one_line(v.expected)} | "
                              f"before {_one_line(v.baseline_response)} | now {_one_line(v.response)}")
    return "\n".join(blocks) if blocks else "\nno item flipped (or no per-sample files to pair them)"


def _one_line(text: str | None, limit: int = 120) -> str:
    if text is None:
        return "–"
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "…")
