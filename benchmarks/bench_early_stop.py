"""Simulation: stopping a benchmark early on the betting confidence sequence (pytest_nemo_eval/confseq.py).

A benchmark of N planned 0/1 samples (accuracy) is gated by `min: 0.5` at 95% confidence. Per scenario
(true accuracy mu) and run, with a fixed seed:

  fixed       all N samples, then the gate's confidence mode: Wilson's 95% interval (gate.interval)
              wholly above the threshold passes, wholly below fails, else inconclusive;
  early stop  after every sample the 95% betting confidence sequence; stop the moment it lies wholly
              above (pass) or below (fail) the threshold; never decided by N: inconclusive.

A verdict is false when it contradicts the truth (pass is true iff mu >= 0.5). Reported per scenario:
false-verdict and inconclusive rates of both, the samples early stopping used (mean) and what that
saves against N. The sequence is anytime-valid, so its false-verdict rate is at most alpha whatever the
scenario; the price is a wider interval, so near the threshold it is inconclusive more often.

Run: python benchmarks/bench_early_stop.py [--runs 1000] [--samples 1000] [--quick]
     (--quick, the CI check: 100 runs of 300 samples)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _results import results_path  # noqa: E402

from pytest_nemo_eval.confseq import BettingCS  # noqa: E402
from pytest_nemo_eval.gate import ScoreValue, interval  # noqa: E402

ALPHA, THRESHOLD, SEED = 0.05, 0.5, 20261207
SCENARIOS = [("clear fail", 0.35), ("near fail", 0.45), ("on the threshold", 0.5), ("near pass", 0.55),
             ("clear pass", 0.65), ("clear pass, high", 0.9)]


def fixed_verdicts(x: np.ndarray) -> list[str]:
    """The gate's own confidence mode on all N samples (Wilson, through gate.interval)."""
    n = x.shape[1]
    out = []
    for k in x.sum(axis=1):
        p = k / n
        low, high, _ = interval(ScoreValue(value=p, stderr=(p * (1 - p) / n) ** 0.5, count=n), 1 - ALPHA)
        out.append("pass" if low >= THRESHOLD else ("fail" if high < THRESHOLD else "inconclusive"))
    return out


def early_verdicts(x: np.ndarray) -> tuple[list[str], np.ndarray]:
    runs, n = x.shape
    cs = BettingCS(ALPHA, batch=runs, extra_points=[THRESHOLD], grid_points=256)
    verdict = np.array(["inconclusive"] * runs, dtype=object)
    used = np.full(runs, n)
    open_ = np.ones(runs, dtype=bool)
    for t in range(n):
        cs.update(x[:, t])
        passed, failed = cs.decided(THRESHOLD)
        for mask, name in ((passed & open_, "pass"), (failed & open_, "fail")):
            verdict[mask] = name
            used[mask] = t + 1
            open_ &= ~mask
        if not open_.any():
            break
    return list(verdict), used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 100 runs of 300 samples")
    args = parser.parse_args()
    runs, n = (100, 300) if args.quick else (args.runs, args.samples)
    rng = np.random.default_rng(SEED)
    rows = []
    started = time.perf_counter()
    print(f"{runs} runs per scenario, {n} planned samples, threshold min {THRESHOLD}, alpha {ALPHA}, seed {SEED}")
    print(f"{'scenario':<18}{'mu':>5}{'fixed false':>12}{'fixed inconcl.':>15}{'early false':>12}"
          f"{'early inconcl.':>15}{'samples used':>13}{'saved':>7}")
    for name, mu in SCENARIOS:
        x = (rng.random((runs, n)) < mu).astype(float)
        truth = "pass" if mu >= THRESHOLD else "fail"
        fixed = fixed_verdicts(x)
        early, used = early_verdicts(x)
        row = {"scenario": name, "mu": mu,
               "fixed_false": sum(v not in (truth, "inconclusive") for v in fixed) / runs,
               "fixed_inconclusive": fixed.count("inconclusive") / runs,
               "early_false": sum(v not in (truth, "inconclusive") for v in early) / runs,
               "early_inconclusive": early.count("inconclusive") / runs,
               "mean_samples_used": float(used.mean()), "saved": 1 - float(used.mean()) / n}
        rows.append(row)
        print(f"{name:<18}{mu:>5.2f}{row['fixed_false']:>12.3f}{row['fixed_inconclusive']:>15.3f}"
              f"{row['early_false']:>12.3f}{row['early_inconclusive']:>15.3f}{row['mean_samples_used']:>13.1f}"
              f"{row['saved']:>7.0%}")
    seconds = time.perf_counter() - started
    path = results_path("bench_early_stop.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs, "samples": n, "threshold": THRESHOLD, "alpha": ALPHA, "seed": SEED,
                                "quick": args.quick, "scenarios": rows, "seconds": seconds}, indent=2) + "\n")
    print(f"({seconds:.1f} s)")
    print(f"wrote {path}")
    ok = all(r["early_false"] <= ALPHA for r in rows) and all(
        r["saved"] >= 0.3 for r in rows if r["scenario"].startswith("clear"))
    return 0 if args.quick or ok else 1


if __name__ == "__main__":
    sys.exit(main())
