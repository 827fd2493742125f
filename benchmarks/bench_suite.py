"""Wall time of the smoke suite on the demo checkpoint: serial vs `-n 2`; cold, warm, re-gate and
resumed; the share of each run spent deploying the model, and how many deployments it made.

    python benchmarks/bench_suite.py [--rounds 2] [--limit N]
    python benchmarks/bench_suite.py --long [--rounds 1]  # a suite whose cold run generates for > 1 minute
    python benchmarks/bench_suite.py --ray [--rounds 1]   # -n 2: ray x2 against pytriton x1, cold cache
    python benchmarks/bench_suite.py --quick              # CI: serial, 1 round, one benchmark, 2 samples

Each configuration is a fresh `pytest suites/smoke.yaml --nemo-checkpoint=demo` process:
- "cold": an empty output dir (empty response cache, no stored results): deploys, generates;
- "warm": the same dir again with --nemo-rerun: every harness runs, every request is a cache hit,
  the model is never deployed (lazy deployment);
- "re-gate": the same dir again: every finished benchmark's result is reused (resume), nothing runs;
- "resumed": a run interrupted after the first half of the benchmarks (measured apart: it is run
  with `-k` on a fresh dir), then the whole suite: the first half reused, the rest cold.
Rounds interleave the configurations so machine noise hits them alike. Prints a table and writes
benchmarks/results/bench_suite.json (or under $NEMO_EVAL_BENCH_RESULTS_DIR).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _results import results_path  # noqa: E402

RESULTS = results_path("bench_suite.json")
LONG_RESULTS = results_path("bench_suite_long.json")
STAGES = ("cold", "warm", "re-gate", "resumed")
SMOKE = REPO / "suites" / "smoke.yaml"
CONFIGS = [("serial", []), ("xdist -n 2", ["-n", "2"])]
QUICK_BENCHMARK = "demo_addition"
RAY_RESULTS = results_path("bench_suite_ray.json")
RAY_CONFIGS = [("-n 2, pytriton x1", ["-n", "2"]),
               ("-n 2, ray x2", ["-n", "2", "--nemo-serving-backend", "ray", "--nemo-replicas", "2"])]


def run_suite(out_dir: Path, extra: list[str], limit: int | None, only: str | list[str] | None = None,
              suite_file: Path = SMOKE) -> dict:
    junit = out_dir / "junit.xml"
    names = [only] if isinstance(only, str) else only
    suites = [f"{suite_file}::{name}" for name in names] if names else [str(suite_file)]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *suites,
               "--nemo-checkpoint=demo", f"--nemo-output-dir={out_dir}", f"--junitxml={junit}", *extra]
    if limit:
        command.append(f"--nemo-limit-samples={limit}")
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode not in (0, 1):  # 1: some threshold failed, which is not what is measured here
        raise SystemExit(f"smoke suite crashed ({' '.join(command)}):\n{completed.stdout[-3000:]}")
    from pytest_nemo_eval.report.junit import read_reports

    report = read_reports([junit])
    errored = [r.benchmark for r in report.benchmarks if r.status == "error"]
    if not report.benchmarks or errored:
        raise SystemExit(f"smoke suite errored ({errored or 'no benchmark results'}):\n{completed.stdout[-3000:]}")
    hits = sum(int(result.proxy.get("cache_hits", 0)) for result in report.benchmarks)
    requests = sum(int(result.proxy.get("requests", 0)) for result in report.benchmarks)
    deploy = float(report.provenance.get("nemo.deploy_seconds", 0.0))
    reused = sum(bool(result.reused_from) for result in report.benchmarks)
    sent = sum(int(result.proxy.get("upstream_calls", 0)) for result in report.benchmarks if not result.reused_from)
    return {"wall_s": wall, "deploy_s": deploy, "deploy_share": deploy / wall, "eval_s": wall - deploy,
            "requests": requests, "cache_hits": hits, "reused": reused, "sent_to_model": sent,
            "deployments": int(report.provenance.get("nemo.deployments", 0)),
            "gate_failed": sum(r.status == "failed" for r in report.benchmarks)}


def run_stage(stage: str, out_dir: Path, extra: list[str], args: argparse.Namespace, suite_file: Path) -> dict:
    """One stage on `out_dir` (cold/warm/re-gate share it in this order); "resumed" uses its own dir."""
    only = QUICK_BENCHMARK if args.quick else None
    if stage == "warm":
        extra = [*extra, "--nemo-rerun"]
    if stage != "resumed":
        return run_suite(out_dir, extra, args.limit, only, suite_file)
    interrupted = out_dir / "resumed"
    names = re.findall(r"^  - name: (\S+)", suite_file.read_text(), flags=re.M)
    first_half = names[: max(1, len(names) // 2)]
    run_suite(interrupted, extra, args.limit, first_half, suite_file)  # not timed
    return run_suite(interrupted, extra, args.limit, None, suite_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="samples per benchmark (default: all)")
    parser.add_argument("--ray", action="store_true", help="-n 2 with Ray Serve x2 against PyTriton x1 (cold cache)")
    parser.add_argument("--long", action="store_true",
                        help="serial, on a copy of the smoke suite at parallelism 1 (its cold run generates > 1 min)")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke: serial only, 1 round, demo_addition alone on 2 samples (cold then warm)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.limit = 1, args.limit or 2
    configs, caches, results = (RAY_CONFIGS, ("cold",), RAY_RESULTS) if args.ray else (CONFIGS, STAGES, RESULTS)
    from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint

    ensure_demo_checkpoint()  # train outside the timings
    suite_file = SMOKE
    if args.quick or args.long:
        configs = configs[:1]
    if args.quick or args.long:
        caches = ("cold", "re-gate")  # the lazy deployment and the stored results (--quick: in seconds)
    samples: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as scratch:
        if args.long:
            results = LONG_RESULTS
            suite_file = Path(scratch) / "smoke_serial.yaml"  # one request at a time: generation dominates
            suite_file.write_text(SMOKE.read_text().replace("parallelism: 4 ", "parallelism: 1 "))
        for round_index in range(args.rounds):
            for name, extra in configs:
                with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
                    out_dir = Path(tmp)
                    for cache in caches:
                        result = run_stage(cache, out_dir, extra, args, suite_file)
                        samples.setdefault(f"{name}, {cache}", []).append(result)
                        print(f"round {round_index + 1}: {name}, {cache}: {result['wall_s']:.1f} s "
                              f"({result['deployments']} deployments, {result['reused']} reused, "
                              f"{result['sent_to_model']} requests sent to the model)", flush=True)
    rows = {}
    for key, runs in samples.items():
        rows[key] = {field: statistics.median(r[field] for r in runs) for field in runs[0]}
        rows[key]["runs"] = len(runs)
    base = rows[f"{configs[0][0]}, cold"]
    for row in rows.values():
        row["speedup_vs_cold"] = base["wall_s"] / row["wall_s"]
    print(f"\n{'configuration':<22} {'wall s':>7} {'vs cold':>8} {'deploys':>8} {'deploy s':>9} {'requests':>9} "
          f"{'cache hits':>11} {'to model':>9} {'reused':>7}")
    for key, row in rows.items():
        print(f"{key:<22} {row['wall_s']:>7.1f} {row['speedup_vs_cold']:>7.2f}x {row['deployments']:>8.0f} "
              f"{row['deploy_s']:>9.1f} {row['requests']:>9.0f} {row['cache_hits']:>11.0f} "
              f"{row['sent_to_model']:>9.0f} {row['reused']:>7.0f}")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "benchmark": ("smoke suite on the demo checkpoint (deploy included), median of rounds"
                      + (", parallelism 1 (--long)" if args.long else "")),
        "stages": {"cold": "empty output dir", "warm": "same dir, --nemo-rerun: harnesses run, all cache hits",
                   "re-gate": "same dir: finished results reused",
                   "resumed": "first half of the benchmarks run before (an interrupted run), then the whole suite"},
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "rounds": args.rounds,
        "quick": args.quick,
        "limit_samples": args.limit,
        "results": rows,
    }, indent=2))
    print(f"\nwrote {results}")


if __name__ == "__main__":
    main()
