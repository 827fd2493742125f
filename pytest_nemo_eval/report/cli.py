"""`nemo-eval-report`: merge JUnit reports, print the score table, compare with a baseline.

    nemo-eval-report gate.xml                         # table as text
    nemo-eval-report shard*.xml --merge all.xml        # merge xdist/CI shards into one file
    nemo-eval-report merge shard*/gate.xml -o gate.xml --baseline last.xml   # --nemo-shard runs as one run
    nemo-eval-report gate.xml --format markdown >> "$GITHUB_STEP_SUMMARY"
    nemo-eval-report gate.xml --baseline last-release.xml --max-drop 0.01   # exit 1 on a NO-GO
    nemo-eval-report gate.xml --baseline last-release.xml --html report.html  # self-contained HTML report
    nemo-eval-report gate.xml --mlflow http://127.0.0.1:5000 --mlflow-experiment release   # (re-)export to MLflow
    nemo-eval-report plan --baseline gate.xml --max-drop 0.01       # items each benchmark needs to decide
    nemo-eval-report compare old.xml new.xml --show-flips          # verdicts and the flipped items' answers

Exit status: 0 fine, 1 a metric regressed versus the baseline (a NO-GO that fails the run: the recorded
gate policy's, docs/concepts/gate-policy.md), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

from pytest_nemo_eval.report.baseline import Baseline
from pytest_nemo_eval.report.comparison import COMPARE_HEADER, comparison_table, judge_run, undecided, write_html_if_asked
from pytest_nemo_eval.report.junit import ReportError, merge_files, read_reports
from pytest_nemo_eval.report.table import render, rows
from pytest_nemo_eval.results import RunResult


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="JUnit XML files written by pytest --junitxml (merged in order)")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    parser.add_argument("--merge", metavar="OUT.xml", help="also write all test suites into one JUnit file")
    parser.add_argument("--baseline", metavar="BASE.xml", help="JUnit report of the run to compare against")
    parser.add_argument("--html", metavar="OUT.html", help="also write the self-contained HTML report")
    parser.add_argument("--mlflow", metavar="URI", help="export to this MLflow tracking server (updates a re-export)")
    parser.add_argument("--mlflow-experiment", default="pytest-nemo-eval", help="MLflow experiment (default %(default)s)")
    parser.add_argument("--max-drop", type=float, default=None,
                        help="the gate's margin for every benchmark (default: each benchmark's recorded policy)")
    parser.add_argument("--tolerance", type=float, default=None, help="deprecated name of --max-drop")
    parser.add_argument("--lenient", action="store_true", help="a supporting benchmark's NO-GO does not fail")
    parser.add_argument("--correction", choices=("holm", "bh"), default=None,
                        help="multiple-comparison adjustment (default: the suite's recorded one, else holm)")
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="level for the stderr-based noise margin (default 0.95)"
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "nemo-eval-report") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge"]:  # the shards of one run as one run: report/merge.py
        from pytest_nemo_eval.report.merge import merge_main

        return merge_main(argv[1:], f"{prog} merge", main)
    if argv[:1] == ["plan"]:  # report/planning.py
        from pytest_nemo_eval.report.planning import plan_main

        return plan_main(argv[1:], f"{prog} plan")
    if argv[:1] == ["compare"]:  # report/compare.py
        from pytest_nemo_eval.report.compare import compare_main

        return compare_main(argv[1:], f"{prog} compare")
    args = _parser(prog).parse_args(argv)
    if args.tolerance is not None:
        print(f"{prog}: --tolerance is deprecated; it sets --max-drop (the gate's margin).", file=sys.stderr)
        args.max_drop = args.max_drop if args.max_drop is not None else args.tolerance
    if not 0 < args.confidence < 1 or (args.max_drop is not None and args.max_drop < 0):
        print(f"{prog}: --confidence must be in (0, 1) and --max-drop >= 0.", file=sys.stderr)
        return 2
    try:
        report = read_reports(args.reports)
        baseline = Baseline(args.baseline, max_drop=args.max_drop, confidence=args.confidence,
                            lenient=args.lenient) if args.baseline else None
        if args.merge:
            merge_files(args.reports, args.merge)
    except (ReportError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    results = report.by_benchmark()
    if not results:
        print(f"{prog}: no nemo-eval benchmark found in {', '.join(args.reports)} (was it written by the plugin?)",
              file=sys.stderr)
        return 2
    print(render(rows(results.values()), args.format))
    if baseline is None:
        return write_html_if_asked(args.html, report, prog) or _export(args, report, prog)
    report, compared = judge_run(report, baseline, args.correction, args.lenient)
    comparison, regressed, notes = comparison_table(compared)
    if write_html_if_asked(args.html, report, prog) or _export(args, report, prog):
        return 2
    print()
    print(render(comparison, args.format, header=COMPARE_HEADER))
    print()
    for note in notes:
        print(note)
    if notes:
        print()
    print(f"{len(regressed)} regression(s), {undecided(compared)} inconclusive versus {args.baseline}"
          + (": " + "; ".join(regressed) if regressed else ""))
    return 1 if regressed else 0


def _export(args: argparse.Namespace, run: RunResult, prog: str) -> int:
    """Export to MLflow when asked (the report files and their JSON/HTML siblings as artifacts); 2 on failure."""
    if not args.mlflow:
        return 0
    from pathlib import Path

    from pytest_nemo_eval.report.mlflow_export import MlflowExportError, export_run

    files = [Path(p) for p in args.reports] + [Path(p).with_name(Path(p).stem + ".results.json") for p in args.reports]
    files += [Path(p).with_suffix(".html") for p in args.reports] + ([Path(args.html)] if args.html else [])
    try:
        run_id = export_run(run, args.mlflow, args.mlflow_experiment, files)
    except MlflowExportError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    print(f"{prog}: exported to MLflow {args.mlflow}: experiment {args.mlflow_experiment!r}, run {run_id}",
          file=sys.stderr)
    return 0
