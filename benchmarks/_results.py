"""Where a benchmark script writes its JSON: benchmarks/results/<name>, or the folder named by
$NEMO_EVAL_BENCH_RESULTS_DIR (the CI check, tests/test_benchmarks_run.py, points it at a temporary
folder so a quick run never overwrites a real measurement). Not a benchmark itself (no `bench_` prefix)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = "NEMO_EVAL_BENCH_RESULTS_DIR"


def results_path(name: str) -> Path:
    folder = os.environ.get(ENV)
    return (Path(folder) if folder else ROOT / "benchmarks" / "results") / name
