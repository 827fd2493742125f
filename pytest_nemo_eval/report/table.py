"""The score table (benchmark, metric, score ± stderr, threshold, verdict) as
plain text for a terminal/CI log or as Markdown for a CI job summary."""

from __future__ import annotations

from typing import Iterable, Literal

from pytest_nemo_eval.results import BenchmarkResult

HEADER = ("benchmark", "metric", "score", "threshold", "verdict")


def rows(results: Iterable[BenchmarkResult]) -> list[tuple[str, ...]]:
    """One row per metric; a benchmark without scores gets one row with its status (one that errored
    after its harness produced scores: its metrics, each with verdict ERROR)."""
    out: list[tuple[str, ...]] = []
    for result in results:
        if not result.metrics:
            out.append((result.benchmark, "-", "-", "-", result.status.upper()))
            continue
        for name, metric in result.metrics.items():
            score = f"{metric.value:.4f}" + (f" ± {metric.stderr:.4f}" if metric.stderr is not None else "")
            threshold = metric.threshold.describe() if metric.threshold else "-"
            verdict = (metric.verdict or "-").upper() if metric.threshold else "-"
            if result.status == "error":  # scores the harness left before the benchmark errored: not judged
                verdict = "ERROR"
            out.append((result.benchmark, name, score, threshold, verdict))
    return out


def render(
    table_rows: list[tuple[str, ...]], fmt: Literal["text", "markdown"] = "text", header: tuple[str, ...] = HEADER
) -> str:
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table_rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *table_rows]) for i in range(len(header))]

    def fmt_row(row: tuple[str, ...]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()

    return "\n".join([fmt_row(header), fmt_row(tuple("-" * w for w in widths))] + [fmt_row(r) for r in table_rows])
