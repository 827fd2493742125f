"""Wall time of the smoke suite on the demo checkpoint: serial vs `-n 2`, cold vs warm
proxy cache, and the share of each run spent deploying the model.

    python benchmarks/bench_suite.py [--rounds 2] [--limit N]
    python benchmarks/bench_suite.py --ray [--rounds 1]   # -n 2: ray x2 against pytriton x1, cold cache
    python benchmarks/bench_suite.py --quick              # CI: serial, 1 round, one benchmark, 2 samples

Each configuration is a fresh `pytest suites/smoke.yaml --nemo-checkpoint=demo`
process (deploy included). "cold" starts with an empty output dir (empty cache);
"warm" re-runs on the same output dir, so every request is a cache hit. Rounds
interleave the configurations so machine noise hits them alike. Prints a table
and writes benchmarks/results/bench_suite.json (or under $NEMO_EVAL_BENCH_RESULTS_DIR).
"""

from __future__ import annotations

import argparse
import json
import platform
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
CONFIGS = [("serial", []), ("xdist -n 2", ["-n", "2"])]
QUICK_BENCHMARK = "demo_addition"
RAY_RESULTS = results_path("bench_suite_ray.json")
RAY_CONFIGS = [("-n 2, pytriton x1", ["-n", "2"]),
               ("-n 2, ray x2", ["-n", "2", "--nemo-serving-backend", "ray", "--nemo-replicas", "2"])]


def run_suite(out_dir: Path, extra: list[str], limit: int | None, only: str | None = None) -> dict:
    junit = out_dir / "junit.xml"
    suite = str(REPO / "suites" / "smoke.yaml") + (f"::{only}" if only else "")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", suite,
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
    return {"wall_s": wall, "deploy_s": deploy, "deploy_share": deploy / wall, "eval_s": wall - deploy,
            "requests": requests, "cache_hits": hits,
            "deployments": int(report.provenance.get("nemo.deployments", 0)),
            "gate_failed": sum(r.status == "failed" for r in report.benchmarks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="samples per benchmark (default: all)")
    parser.add_argument("--ray", action="store_true", help="-n 2 with Ray Serve x2 against PyTriton x1 (cold cache)")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke: serial only, 1 round, demo_addition alone on 2 samples (cold then warm)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.limit = 1, args.limit or 2
    configs, caches, results = (RAY_CONFIGS, ("cold",), RAY_RESULTS) if args.ray else (CONFIGS, ("cold", "warm"), RESULTS)
    from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint

    ensure_demo_checkpoint()  # train outside the timings
    if args.quick:
        configs = configs[:1]
    samples: dict[str, list[dict]] = {}
    for round_index in range(args.rounds):
        for name, extra in configs:
            with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
                out_dir = Path(tmp)
                for cache in caches:
                    result = run_suite(out_dir, extra, args.limit, QUICK_BENCHMARK if args.quick else None)
                    samples.setdefault(f"{name}, {cache} cache", []).append(result)
                    print(f"round {round_index + 1}: {name}, {cache}: {result['wall_s']:.1f} s", flush=True)
    rows = {}
    for key, runs in samples.items():
        rows[key] = {field: statistics.median(r[field] for r in runs) for field in runs[0]}
        rows[key]["runs"] = len(runs)
    base = rows[f"{configs[0][0]}, cold cache"]
    print(f"\n{'configuration':<26} {'wall s':>8} {'vs first':>9} {'deploy s':>9} {'eval s':>7} {'eval vs first':>14} "
          f"{'requests':>9} {'cache hits':>11}")
    for key, row in rows.items():
        print(f"{key:<26} {row['wall_s']:>8.1f} {base['wall_s'] / row['wall_s']:>8.2f}x {row['deploy_s']:>9.1f} "
              f"{row['eval_s']:>7.1f} {base['eval_s'] / row['eval_s']:>13.2f}x {row['requests']:>9.0f} "
              f"{row['cache_hits']:>11.0f}")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "benchmark": "smoke suite on the demo checkpoint (deploy included), median of rounds",
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "rounds": args.rounds,
        "quick": args.quick,
        "limit_samples": args.limit,
        "results": rows,
    }, indent=2))
    print(f"\nwrote {results}")


if __name__ == "__main__":
    main()
