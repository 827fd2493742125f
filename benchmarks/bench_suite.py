"""Wall time of the smoke suite on the demo checkpoint: serial vs `-n 2`, cold vs warm
proxy cache, and the share of each run spent deploying the model.

    python benchmarks/bench_suite.py [--rounds 2] [--limit N]
    python benchmarks/bench_suite.py --ray [--rounds 1]   # -n 2: ray x2 against pytriton x1, cold cache

Each configuration is a fresh `pytest suites/smoke.yaml --nemo-checkpoint=demo`
process (deploy included). "cold" starts with an empty output dir (empty cache);
"warm" re-runs on the same output dir, so every request is a cache hit. Rounds
interleave the configurations so machine noise hits them alike. Prints a table
and writes benchmarks/results/bench_suite.json.
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
RESULTS = REPO / "benchmarks" / "results" / "bench_suite.json"
CONFIGS = [("serial", []), ("xdist -n 2", ["-n", "2"])]
RAY_RESULTS = REPO / "benchmarks" / "results" / "bench_suite_ray.json"
RAY_CONFIGS = [("-n 2, pytriton x1", ["-n", "2"]),
               ("-n 2, ray x2", ["-n", "2", "--nemo-serving-backend", "ray", "--nemo-replicas", "2"])]


def run_suite(out_dir: Path, extra: list[str], limit: int | None) -> dict:
    junit = out_dir / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(REPO / "suites" / "smoke.yaml"),
               "--nemo-checkpoint=demo", f"--nemo-output-dir={out_dir}", f"--junitxml={junit}", *extra]
    if limit:
        command.append(f"--nemo-limit-samples={limit}")
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"smoke suite failed ({' '.join(command)}):\n{completed.stdout[-3000:]}")
    from pytest_nemo_eval.report.junit import read_reports

    report = read_reports([junit])
    hits = sum(int(c.record.info.get("proxy.cache_hits", 0)) for c in report.cases)
    requests = sum(int(c.record.info.get("proxy.requests", 0)) for c in report.cases)
    deploy = float(report.provenance["nemo.deploy_seconds"])
    return {"wall_s": wall, "deploy_s": deploy, "deploy_share": deploy / wall, "eval_s": wall - deploy,
            "requests": requests, "cache_hits": hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="samples per benchmark (default: all)")
    parser.add_argument("--ray", action="store_true", help="-n 2 with Ray Serve x2 against PyTriton x1 (cold cache)")
    args = parser.parse_args()
    configs, caches, results = (RAY_CONFIGS, ("cold",), RAY_RESULTS) if args.ray else (CONFIGS, ("cold", "warm"), RESULTS)
    from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint

    ensure_demo_checkpoint()  # train outside the timings
    samples: dict[str, list[dict]] = {}
    for round_index in range(args.rounds):
        for name, extra in configs:
            with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
                out_dir = Path(tmp)
                for cache in caches:
                    result = run_suite(out_dir, extra, args.limit)
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
        "limit_samples": args.limit,
        "results": rows,
    }, indent=2))
    print(f"\nwrote {results}")


if __name__ == "__main__":
    main()
