"""Benchmark: builtin-harness throughput against the demo deployment, and container start overhead.

One run, one deployment of the demo checkpoint (real megatron-core model behind
PyTriton and the OpenAI front), side by side:

  ceiling  p=N   the same demo_addition requests (same prompts, max_tokens, stop)
                 sent straight from N client threads with the harness's own HTTP
                 client: what the server can give at that concurrency
  harness  p=N   `run_harness` (local runtime) with parallelism N on demo_addition:
                 samples/s inside the harness (its own timer) and end to end
                 (process start, dataset load, results.yml)
  local / docker the same small task through each runtime, end-to-end wall time;
                 the difference is the container start overhead
  sandbox        the cost of the code sandbox, side by side: honest demo_addition_code
                 programs (the right completion filled in, no model) through
                 `run_sandboxed` under bubblewrap and unsandboxed, at parallelism 1 and 4;
                 then demo_addition_code through the harness against the model with
                 code_isolation=bubblewrap vs unsandboxed (samples/s, its own timer)

Ratios: harness samples/s over the ceiling at the same concurrency (medians of --rounds).
Run: python benchmarks/bench_harness.py [--samples N] [--skip-docker]
     python benchmarks/bench_harness.py --sandbox-only   (no deployment; writes bench_harness_sandbox.json)
     python benchmarks/bench_harness.py --quick          (the CI check: 8 samples, concurrency 4, 1 round, no docker)
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import results_path  # noqa: E402
from pytest_nemo_eval.harness.builtin.client import ModelClient  # noqa: E402
from pytest_nemo_eval.harness.builtin.dataset import load_jsonl  # noqa: E402
from pytest_nemo_eval.harness.builtin.tasks import find_task  # noqa: E402
from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness  # noqa: E402

RESULTS = results_path("bench_harness.json")
SANDBOX_RESULTS = results_path("bench_harness_sandbox.json")
TASK = "demo_addition"
CODE_TASK = "demo_addition_code"
SANDBOX_PARALLELISM = (1, 4)
ISOLATIONS = ("bubblewrap", "unsandboxed")
CONCURRENCY = (1, 4, 16)
IN_HARNESS = re.compile(r"done in [0-9.]+ s \(([0-9.]+) samples/s\)")


def ceiling(url: str, prompts: list[str], concurrency: int) -> float:
    """Samples/s of bare requests, the harness's client and request shape, no harness around them."""
    spec = find_task(TASK)
    client = ModelClient(url, "demo", "completions", pool_size=concurrency)
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda p: client.generate(p, max_tokens=spec.max_tokens, temperature=0.0, stop=spec.stop),
                      prompts))
    return len(prompts) / (time.monotonic() - started)


def harness(url: str, samples: int, parallelism: int, runtime: str, work: Path) -> tuple[float, float]:
    """(in-harness samples/s, end-to-end wall seconds) of one run_harness call."""
    lines: list[str] = []
    started = time.monotonic()
    run_harness(HarnessInvocation(
        harness="builtin", task=TASK, model_id="demo", model_url=url, runtime=runtime,
        output_dir=work / f"{runtime}-p{parallelism}-{time.monotonic_ns()}", limit_samples=samples,
        parallelism=parallelism, timeout_s=900,
    ), on_log=lines.append)
    wall = time.monotonic() - started
    rate = next(float(m.group(1)) for line in lines if (m := IN_HARNESS.search(line)))
    return rate, wall


def honest_programs(count: int) -> list[str]:
    """demo_addition_code programs with the right completion (the test's expected value) filled in."""
    from pytest_nemo_eval.harness.builtin.code_generation import build_program

    spec = find_task(CODE_TASK)
    records = load_jsonl(spec.data_path(), ["prompt", "test", "entry_point"])[:count]
    return [build_program(spec, r["prompt"], r["test"].rsplit("==", 1)[1].strip(), r) for r in records]


def sandbox_rate(programs: list[str], parallelism: int, isolation: str) -> float:
    """Samples/s of `run_sandboxed` alone; every honest program must pass (else the number means nothing)."""
    from pytest_nemo_eval.harness.builtin.sandbox import run_sandboxed

    spec = find_task(CODE_TASK)
    started = time.monotonic()
    with ThreadPoolExecutor(parallelism) as pool:
        results = list(pool.map(lambda p: run_sandboxed(p, timeout_s=spec.timeout_s, memory_mb=spec.memory_mb,
                                                         max_processes=spec.max_processes, isolation=isolation),
                                programs))
    elapsed = time.monotonic() - started
    failed = [r for r in results if not r.passed]
    if failed:
        raise SystemExit(f"{len(failed)} honest programs failed under {isolation}: {failed[0].detail}")
    return len(programs) / elapsed


def sandbox_table(samples: int, rounds: int, startup_repeats: int = 10) -> dict:
    """Sandbox alone, bubblewrap vs unsandboxed, interleaved rounds, medians; plus bwrap's start-up cost."""
    programs = honest_programs(samples)
    sandbox_rate(programs[:2], 1, "bubblewrap")  # warm-up (and the one-time bwrap probe)
    startup = bwrap_startup_ms(max(startup_repeats, rounds * 5))
    print(f"python -I -c pass, median ms: sandbox interpreter bare {startup['bare']}, inside bwrap "
          f"{startup['bwrap']} (bwrap adds {startup['bwrap'] - startup['bare']:.1f}); "
          f"harness interpreter bare {startup['harness_python_bare']}")
    print(f"sandbox alone: {len(programs)} honest {CODE_TASK} programs, median of {rounds}")
    print(f"{'parallelism':>11} {'isolation':>12} {'samples/s':>10} {'ms/sample':>10} {'vs unsandboxed':>15}")
    rows = []
    for parallelism in SANDBOX_PARALLELISM:
        rates: dict[str, list[float]] = {iso: [] for iso in ISOLATIONS}
        for _ in range(rounds):
            for isolation in ISOLATIONS:
                rates[isolation].append(sandbox_rate(programs, parallelism, isolation))
        base = statistics.median(rates["unsandboxed"])
        for isolation in ISOLATIONS:
            rate = statistics.median(rates[isolation])
            rows.append({"parallelism": parallelism, "isolation": isolation, "samples_per_s": round(rate, 2),
                         "ms_per_sample": round(1000 / rate, 1), "ratio_vs_unsandboxed": round(rate / base, 3),
                         "rounds": rounds, "samples": len(programs)})
            print(f"{parallelism:>11} {isolation:>12} {rate:>10.1f} {1000 / rate:>10.1f} {rate / base:>15.2f}")
    return {"startup_ms": startup, "rows": rows}


def bwrap_startup_ms(repeats: int) -> dict[str, float]:
    """Median ms of `python -I -c pass` with the sandbox's interpreter, bare vs inside bwrap (same uid):
    what bwrap itself adds per sample, apart from which interpreter each level uses."""
    from pytest_nemo_eval.harness.builtin.bubblewrap import bubblewrap

    setup = bubblewrap()
    commands = {"bare": [setup.python, "-I", "-c", "pass"],
                "bwrap": setup.command(["-I", "-c", "pass"], scratch_mb=64),
                "harness_python_bare": [sys.executable, "-I", "-c", "pass"]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            started = time.monotonic()
            subprocess.run(command, check=True, **(setup.popen_kwargs() if name != "harness_python_bare" else {}))
            times[name].append((time.monotonic() - started) * 1000)
    return {name: round(statistics.median(values), 1) for name, values in times.items()}


def harness_code(url: str, samples: int, parallelism: int, isolation: str, work: Path) -> float:
    """In-harness samples/s of demo_addition_code against the model at one isolation level."""
    lines: list[str] = []
    run_harness(HarnessInvocation(
        harness="builtin", task=CODE_TASK, model_id="demo", model_url=url, runtime="local",
        output_dir=work / f"code-{isolation}-{time.monotonic_ns()}", limit_samples=samples,
        parallelism=parallelism, timeout_s=900, overrides={"code_isolation": isolation},
    ), on_log=lines.append)
    return next(float(m.group(1)) for line in lines if (m := IN_HARNESS.search(line)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=100, help="demo_addition samples per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="ceiling/harness pairs per concurrency (median)")
    parser.add_argument("--overhead-samples", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="runs per runtime for the overhead figure")
    parser.add_argument("--skip-docker", action="store_true")
    parser.add_argument("--sandbox-samples", type=int, default=40, help="programs per sandbox measurement")
    parser.add_argument("--sandbox-only", action="store_true", help="only the sandbox table (no deployment)")
    parser.add_argument("--quick", action="store_true",
                        help="CI smoke: 8 samples, concurrency 4 only, 1 round, local runtime only, 4 sandbox programs")
    args = parser.parse_args()
    concurrencies = CONCURRENCY
    if args.quick:
        args.samples, args.rounds, args.overhead_samples, args.repeats = 8, 1, 2, 1
        args.skip_docker, args.sandbox_samples, concurrencies = True, 4, (4,)

    machine = {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    if args.sandbox_only:
        report = {"machine": machine, "quick": args.quick,
                  "sandbox": sandbox_table(args.sandbox_samples, args.rounds, 3 if args.quick else 10)}
        SANDBOX_RESULTS.parent.mkdir(parents=True, exist_ok=True)
        SANDBOX_RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {SANDBOX_RESULTS}")
        return 0

    from pytest_nemo_eval.checkpoint.demo import ensure_demo_checkpoint
    from pytest_nemo_eval.serving.launcher import Deployment, DeploymentSettings

    prompts = [r["prompt"] for r in load_jsonl(find_task(TASK).data_path(), ["prompt"])][: args.samples]
    report: dict = {"machine": machine, "quick": args.quick, "task": TASK, "samples": len(prompts), "throughput": [], "overhead": {}}
    with Deployment(DeploymentSettings(checkpoint=ensure_demo_checkpoint())) as deployment, \
            tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp:
        url = f"{deployment.url}/v1/completions"
        work = Path(tmp)
        ceiling(url, prompts[:4], 1)  # warm-up
        print(f"{'concurrency':>11} {'ceiling/s':>10} {'harness/s':>10} {'ratio':>6} {'end-to-end s':>13}")
        for concurrency in concurrencies:
            tops, rates, walls = [], [], []
            for _ in range(args.rounds):  # interleaved, so background load hits both alike
                tops.append(ceiling(url, prompts, concurrency))
                rate, wall = harness(url, len(prompts), concurrency, "local", work)
                rates.append(rate)
                walls.append(wall)
            top, rate, wall = (statistics.median(v) for v in (tops, rates, walls))
            row = {"concurrency": concurrency, "ceiling_samples_per_s": round(top, 2),
                   "harness_samples_per_s": round(rate, 2), "ratio": round(rate / top, 3),
                   "harness_end_to_end_s": round(wall, 2), "rounds": args.rounds}
            report["throughput"].append(row)
            print(f"{concurrency:>11} {top:>10.1f} {rate:>10.1f} {rate / top:>6.2f} {wall:>13.2f}")
        runtimes = ["local"] + ([] if args.skip_docker or not docker_ready() else ["docker"])
        for runtime in runtimes:
            walls = [harness(url, args.overhead_samples, 1, runtime, work)[1] for _ in range(args.repeats)]
            report["overhead"][runtime] = {"wall_s": [round(w, 2) for w in walls], "min_s": round(min(walls), 2)}
        if "docker" in report["overhead"]:
            extra = report["overhead"]["docker"]["min_s"] - report["overhead"]["local"]["min_s"]
            report["overhead"]["docker_minus_local_s"] = round(extra, 2)
        print(f"runtime overhead on {args.overhead_samples} samples (min of {args.repeats}): "
              + ", ".join(f"{k} {v['min_s']} s" for k, v in report["overhead"].items() if isinstance(v, dict))
              + (f"; docker - local = {report['overhead'].get('docker_minus_local_s')} s"
                 if "docker" in report["overhead"] else " (docker skipped)"))
        report["sandbox"] = sandbox_table(args.sandbox_samples, args.rounds, 3 if args.quick else 10)
        code_rates: dict[str, list[float]] = {iso: [] for iso in ISOLATIONS}
        for _ in range(args.rounds):
            for isolation in ISOLATIONS:
                code_rates[isolation].append(harness_code(url, args.sandbox_samples, 4, isolation, work))
        report["harness_code"] = {iso: round(statistics.median(v), 2) for iso, v in code_rates.items()}
        print(f"harness {CODE_TASK} p=4, {args.sandbox_samples} samples (median of {args.rounds}): "
              + ", ".join(f"{iso} {rate} samples/s" for iso, rate in report["harness_code"].items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


def docker_ready() -> bool:
    """Docker reachable and the harness image built (builds it when missing)."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        print("docker: no daemon reachable, skipping the docker runtime")
        return False
    build = ROOT / "fixtures" / "harness_image" / "build_image.py"
    return subprocess.run([sys.executable, str(build)]).returncode == 0


if __name__ == "__main__":
    sys.exit(main())
