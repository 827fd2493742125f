"""The score table (benchmark, metric, score ± stderr, threshold, verdict) as
plain text for a terminal/CI log or as Markdown for a CI job summary."""

from __future__ import annotations

from typing import Iterable, Literal

from pytest_nemo_eval.report.properties import BenchmarkRecord

HEADER = ("benchmark", "metric", "score", "threshold", "verdict")


def rows(records: Iterable[tuple[BenchmarkRecord, str]]) -> list[tuple[str, ...]]:
    """One row per metric; a benchmark without scores gets one row with its status."""
    out = []
    for record, status in records:
        if not record.metrics:
            out.append((record.benchmark, "-", "-", "-", status.upper()))
            continue
        for name, metric in record.metrics.items():
            score = f"{metric.value:.4f}" + (f" ± {metric.stderr:.4f}" if metric.stderr is not None else "")
            verdict = (metric.verdict or "-").upper() if metric.threshold else "-"
            out.append((record.benchmark, name, score, metric.threshold or "-", verdict))
    return out


def render(
    table_rows: list[tuple[str, ...]], fmt: Literal["text", "markdown"] = "text", header: tuple[str, ...] = HEADER
) -> str:
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table_rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *table_rows]) for i in range(len(header))]
    fmt_row = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt_row(header), fmt_row(tuple("-" * w for w in widths))] + [fmt_row(r) for r in table_rows])
