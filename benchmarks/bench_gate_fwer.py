"""Simulation: how often does a release that changed nothing fail the baseline gate?

A suite of 20 benchmarks with 3 metrics each (60 comparisons), every metric 0/1 per item. Each item
has its own difficulty p_i ~ Beta(2, 1) (an easy item is easy in both runs); the baseline and the
candidate each score item i as Bernoulli(p_i), independently: the candidate is the *same* model
sampled again, so every true drop is 0. Per run and rule, the run fails when any comparison fails:

  old: p<alpha           the gate before issue 27: one-sided McNemar p < 0.05 (and a drop > 0)
  margin 0.015, raw      the gate policy (gate_policy.py), NO-GO = drop interval above 0.015, unadjusted
  margin 0.015, holm     the same, NO-GO p Holm-adjusted over the 60 (the default)
  margin 0, raw / holm   a policy with max_drop 0 (a pure "is it worse" gate), raw and Holm-adjusted
  margin 0, bh           ... Benjamini-Hochberg (controls the FDR, not the FWER: shown for contrast)

Also: how often a run has an INCONCLUSIVE comparison (with the default margin), which under the
suite's `inconclusive: fail` would fail it too (it says "collect more samples", see `plan`).
The statistics are computed vectorised here and checked, on the first run, against the plugin's
own `paired_test` + `decide` + `adjust` (the script exits 1 if they differ). Seeded.

Run: python benchmarks/bench_gate_fwer.py [--runs 1000] [--items 500] [--quick]
     (--quick, the CI check: 60 runs of 200 items)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import binom, norm

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _results import results_path  # noqa: E402

from pytest_nemo_eval.gate_policy import adjust, decide  # noqa: E402
from pytest_nemo_eval.paired import paired_test  # noqa: E402

BENCHMARKS, METRICS, ALPHA, SEED = 20, 3, 0.05, 20261207


def simulate_run(rng: np.random.Generator, items: int) -> dict[str, np.ndarray]:
    """Per comparison: drop, its paired stderr, and McNemar's one-sided p."""
    m = BENCHMARKS * METRICS
    p = rng.beta(2.0, 1.0, size=(m, items))
    before = (rng.random((m, items)) < p).astype(float)
    after = (rng.random((m, items)) < p).astype(float)
    diffs = before - after
    worse, better = (diffs > 0).sum(axis=1), (diffs < 0).sum(axis=1)
    discordant = worse + better
    mcnemar = np.where(discordant > 0, binom.sf(worse - 1, np.maximum(discordant, 1), 0.5), 1.0)
    return {"drop": diffs.mean(axis=1), "se": diffs.std(axis=1, ddof=1) / np.sqrt(items), "mcnemar": mcnemar,
            "before": before, "after": after}


def margin_p(drop: np.ndarray, se: np.ndarray, margin: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, norm.sf((drop - margin) / np.where(se > 0, se, 1)), (drop <= margin).astype(float))


def check_against_the_plugin(run: dict[str, np.ndarray], margin: float) -> None:
    """The vectorised numbers are the plugin's: paired_test's McNemar p and stderr, decide's p, adjust's Holm."""
    ps = []
    for k in range(5):
        ids = [str(i) for i in range(run["before"].shape[1])]
        test = paired_test(dict(zip(ids, run["before"][k])), dict(zip(ids, run["after"][k])))
        assert test is not None
        d = decide(test.drop, test.stderr, margin, tier="critical", confidence=1 - ALPHA, interval="paired")
        assert np.isclose(test.p_value, run["mcnemar"][k]) and np.isclose(test.stderr, run["se"][k]), k
        assert np.isclose(d.p_value, margin_p(run["drop"][k:k + 1], run["se"][k:k + 1], margin)[0]), k
        ps.append(d.p_value)
    holm = adjust(ps, "holm")
    order = np.argsort(ps)
    manual = np.maximum.accumulate([min(1.0, (5 - j) * ps[i]) for j, i in enumerate(order)])
    assert np.allclose(np.array(holm)[order], manual)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="CI smoke: 60 runs of 200 items")
    args = parser.parse_args()
    runs, items = (60, 200) if args.quick else (args.runs, args.items)
    rng = np.random.default_rng(SEED)
    rules = ["old: p<alpha", "margin 0.015, raw", "margin 0.015, holm", "margin 0, raw", "margin 0, holm",
             "margin 0, bh"]
    failed = dict.fromkeys(rules, 0)
    comparisons_failed = dict.fromkeys(rules, 0)
    inconclusive_runs = 0
    started = time.perf_counter()
    for r in range(runs):
        run = simulate_run(rng, items)
        if r == 0:
            check_against_the_plugin(run, 0.015)
        decisions = {"old: p<alpha": (run["mcnemar"] < ALPHA) & (run["drop"] > 0)}
        for margin in (0.015, 0.0):
            p = margin_p(run["drop"], run["se"], margin)
            name = f"margin {margin:g}"
            decisions[f"{name}, raw"] = p < ALPHA / 2
            decisions[f"{name}, holm"] = np.array(adjust(list(p), "holm")) < ALPHA / 2
            if margin == 0.0:
                decisions[f"{name}, bh"] = np.array(adjust(list(p), "bh")) < ALPHA / 2
            else:
                high = run["drop"] + norm.ppf(1 - ALPHA / 2) * run["se"]
                inconclusive_runs += bool(np.any((high > margin) & ~decisions[f"{name}, holm"]))
        for rule in rules:
            failed[rule] += bool(np.any(decisions[rule]))
            comparisons_failed[rule] += int(np.sum(decisions[rule]))
    seconds = time.perf_counter() - started
    m = BENCHMARKS * METRICS
    print(f"no-change suite: {BENCHMARKS} benchmarks x {METRICS} metrics = {m} comparisons, {items} items each, "
          f"{runs} runs, seed {SEED} ({seconds:.1f} s)")
    print(f"{'rule':<22}{'runs failed':>14}{'share':>9}{'comparisons failed':>21}")
    rows = []
    for rule in rules:
        share = failed[rule] / runs
        rows.append({"rule": rule, "runs_failed": failed[rule], "share": share,
                     "comparisons_failed_share": comparisons_failed[rule] / (runs * m)})
        print(f"{rule:<22}{failed[rule]:>14}{share:>9.3f}{comparisons_failed[rule] / (runs * m):>21.4f}")
    print(f"runs with an INCONCLUSIVE comparison at margin 0.015: {inconclusive_runs} ({inconclusive_runs / runs:.3f})")
    path = results_path("bench_gate_fwer.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "benchmarks": BENCHMARKS, "metrics": METRICS, "items": items, "runs": runs, "seed": SEED, "alpha": ALPHA,
        "quick": args.quick, "rules": rows, "inconclusive_runs_share": inconclusive_runs / runs,
        "seconds": seconds}, indent=2) + "\n")
    print(f"wrote {path}")
    holm = next(row for row in rows if row["rule"] == "margin 0.015, holm")
    return 0 if args.quick or holm["share"] <= ALPHA else 1


if __name__ == "__main__":
    sys.exit(main())
