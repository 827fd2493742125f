"""Benchmarks that cannot rot: every `benchmarks/bench_*.py` runs here with `--quick`, its smallest
settings, and must exit 0 and write its JSON.

The contract a benchmark script keeps (a new one included, found by the glob below):
- it takes `--quick` (a few seconds of work where it can; its deployment, if it has one, is the floor);
- it writes its JSON where `benchmarks/_results.py`'s `results_path` says, so that with
  $NEMO_EVAL_BENCH_RESULTS_DIR set a quick run never overwrites a real measurement in
  benchmarks/results/;
- it prints `wrote <path>.json` for every JSON file it wrote.

Speed is not asserted (`pytest --durations=0` shows what each script costs CI).
The demo checkpoint is trained (if missing) once, before any script, outside their time limits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
DEFAULT_RESULTS = BENCHMARKS / "results"
RESULTS_ENV = "NEMO_EVAL_BENCH_RESULTS_DIR"  # benchmarks/_results.py
SCRIPTS = sorted(BENCHMARKS.glob("bench_*.py"))
# A quick run well over this is a script that ignored --quick (full settings take many minutes).
QUICK_LIMIT_S = 300
# Scripts that still write straight into benchmarks/results/ (not through results_path): the test keeps
# that folder's files as they were around their run. Remove a name once its script uses results_path.
NOT_REDIRECTED: set[str] = set()
WROTE = re.compile(r"^wrote (\S+\.json)\s*$", re.MULTILINE)


@pytest.fixture(scope="module")
def trained_demo() -> Path:
    """Not the `demo_checkpoint` fixture: that one marks the test demo_model, which CI re-runs against a
    second training seed; the benchmarks' speed does not depend on which demo learned."""
    from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint

    return ensure_demo_checkpoint()


def test_every_benchmark_is_found() -> None:
    assert len(SCRIPTS) >= 6, [s.name for s in SCRIPTS]


def _run(script: Path, env: dict[str, str]) -> tuple[int, str, float]:
    """Run `script --quick` in its own process group; past the limit, Ctrl-C the group (the script's own
    `finally`/`with` blocks stop its deployments), then kill it."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(script), "--quick"], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=QUICK_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        pytest.fail(f"{script.name} --quick ran past {QUICK_LIMIT_S} s: does it honour --quick?\n{output[-3000:]}")
    return process.returncode, output, time.monotonic() - started


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.glob("*")} if folder.is_dir() else {}


def _restore(folder: Path, before: dict[Path, bytes]) -> None:
    for path in folder.glob("*") if folder.is_dir() else ():
        if path not in before and path.is_file():
            path.unlink()
    for path, data in before.items():
        path.write_bytes(data)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_quick_run_writes_its_json(script: Path, tmp_path: Path, trained_demo: Path) -> None:
    source = script.read_text(encoding="utf-8")
    assert "--quick" in source, f"{script.name} has no --quick mode: every benchmark must run in CI in seconds"
    out = tmp_path / "results"
    env = {**os.environ, RESULTS_ENV: str(out)}
    kept = _snapshot(DEFAULT_RESULTS) if script.name in NOT_REDIRECTED else None
    started = time.time()
    try:
        returncode, output, _ = _run(script, env)
        assert returncode == 0, f"{script.name} --quick exited {returncode}:\n{output[-4000:]}"
        written = [Path(p) if Path(p).is_absolute() else ROOT / p for p in WROTE.findall(output)]
        assert written, f"{script.name} --quick printed no 'wrote <path>.json' line:\n{output[-2000:]}"
        for path in written:
            if script.name not in NOT_REDIRECTED:
                assert path.parent == out, f"{script.name} wrote {path}, not under ${RESULTS_ENV} (use results_path)"
            assert path.stat().st_mtime >= started - 1, f"{path} is older than this run"
            document = json.loads(path.read_text(encoding="utf-8"))
            assert isinstance(document, dict) and document, f"{path} is empty"
    finally:
        if kept is not None:
            _restore(DEFAULT_RESULTS, kept)
        shutil.rmtree(out, ignore_errors=True)
