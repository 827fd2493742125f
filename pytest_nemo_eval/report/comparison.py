"""One run judged against a baseline, as both `nemo-eval-report NEW --baseline OLD` and `nemo-eval-report compare
OLD NEW` show it: every benchmark compared under its recorded gate policy, the family adjusted (Holm or BH), the
table and its notes, and the HTML report when asked. One place, so the two commands cannot drift apart."""

from __future__ import annotations

import sys

from pytest_nemo_eval.gate import Comparison
from pytest_nemo_eval.report.baseline import Baseline, adjust_family
from pytest_nemo_eval.results import RunResult
from pytest_nemo_eval.suite import Correction

COMPARE_HEADER = ("benchmark", "metric", "baseline", "current", "change", "margin", "drop 95% CI", "verdict",
                  "p raw", "p adjusted", "test")


def judge_run(run: RunResult, baseline: Baseline, correction: Correction | None,
              lenient: bool) -> tuple[RunResult, dict[str, list[Comparison] | None]]:
    """The run with each benchmark's baseline comparisons attached, and the comparisons by benchmark. An errored
    benchmark's partial scores are evidence, not a result to gate. The correction is the one asked for, else the
    one the run recorded, else Holm."""
    results = run.by_benchmark()
    compared = {bid: baseline.compare(bid, r.metrics if r.status != "error" else {}, r.samples_file, policy=r.gate)
                for bid, r in results.items()}
    recorded = [r.multiple_comparisons for r in results.values() if r.multiple_comparisons]
    chosen: Correction = correction or (recorded[0] if recorded else "holm")
    compared = adjust_family(compared, chosen, lenient)
    judged = run.model_copy(update={"benchmarks": [
        r.model_copy(update={"baseline": compared[bid] or []}) for bid, r in results.items()]})
    return judged, compared


def undecided(compared: dict[str, list[Comparison] | None]) -> int:
    return sum(c.verdict == "INCONCLUSIVE" for cs in compared.values() for c in cs or [])


def write_html_if_asked(path: str | None, run: RunResult, prog: str) -> int:
    """Write the HTML report when asked; 2 (bad output path) or 0."""
    if not path:
        return 0
    from pytest_nemo_eval.report.html import write_html

    try:
        print(f"{prog}: HTML report written to {write_html(run, path)}", file=sys.stderr)
    except OSError as exc:
        print(f"{prog}: cannot write the HTML report {path}: {exc}", file=sys.stderr)
        return 2
    return 0


def comparison_table(
    compared: dict[str, list[Comparison] | None],
) -> tuple[list[tuple[str, ...]], list[str], list[str]]:
    """Rows for every metric found in both reports, the descriptions of the regressions, and per
    metric how it was compared (paired test and flipped items, or why unpaired)."""
    table: list[tuple[str, ...]] = []
    regressed: list[str] = []
    notes: list[str] = []
    for benchmark, comparisons in compared.items():
        if comparisons is None:
            table.append((benchmark, "-", "-", "-", "-", "-", "-", "NEW (not in baseline)", "-", "-", "-"))
            continue
        for c in comparisons:
            d = c.decision
            assert d is not None  # Baseline.compare decides every comparison
            verdict = d.verdict + (" (REGRESSED)" if c.regressed else "")
            test = c.method if c.paired is None else f"{c.method} p={c.paired.p_value:.3g} mde {c.paired.mde:.4f}"
            adjusted = f"{d.p_adjusted:.3g}" if d.p_adjusted is not None else "-"
            table.append((benchmark, c.metric, f"{c.baseline:.4f}", f"{c.current:.4f}",
                          f"{c.current - c.baseline:+.4f}", f"{d.margin:.4f}", f"[{d.ci_low:+.4f}, {d.ci_high:+.4f}]",
                          verdict, f"{d.p_value:.3g}", adjusted, test))
            if c.regressed:
                regressed.append(c.describe())
            notes.append(f"{benchmark} {c.metric}: " + "; ".join(
                part for part in (c.paired.describe() if c.paired else None, c.note) if part))
            if c.paired is not None and (c.paired.worse or c.paired.better):
                notes.append(f"  worse: {_ids(c.paired.worse)}; better: {_ids(c.paired.better)}")
    return table, regressed, notes


def _ids(ids: list[str], limit: int = 20) -> str:
    return (", ".join(ids[:limit]) + (f" ... ({len(ids)} in all)" if len(ids) > limit else "")) or "none"
