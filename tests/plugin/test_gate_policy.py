"""The baseline gate's policy (gate_policy.py, suite `gate:`): GO / NO-GO / INCONCLUSIVE from the drop's
interval against the margin, checked against the textbook normal formulas (scipy's norm), statsmodels'
`multipletests` for Holm and Benjamini-Hochberg, and the issue's two cases on real per-sample files."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from statsmodels.stats.multitest import multipletests

from pytest_nemo_eval.gate_policy import adjust, decide, effect, live_bound
from pytest_nemo_eval.report.baseline import Baseline
from pytest_nemo_eval.suite import GatePolicy, SuiteError, load_suite

from .test_baseline_paired import write_run


def test_verdict_is_the_interval_against_the_margin_and_p_the_textbook_one():
    rng = np.random.default_rng(3)
    seen = set()
    for drop, se, margin in zip(rng.normal(0.01, 0.03, 400), rng.uniform(0.001, 0.02, 400), rng.uniform(0, 0.03, 400)):
        d = decide(float(drop), float(se), float(margin), tier="critical", confidence=0.95, interval="test")
        low, high = drop - norm.ppf(0.975) * se, drop + norm.ppf(0.975) * se
        assert (d.ci_low, d.ci_high) == pytest.approx((low, high), rel=1e-9)
        assert d.p_value == pytest.approx(norm.sf((drop - margin) / se), rel=1e-9, abs=1e-15)
        expected = "NO-GO" if low > margin else ("GO" if high <= margin else "INCONCLUSIVE")
        assert d.verdict == expected
        seen.add(expected)
    assert seen == {"GO", "NO-GO", "INCONCLUSIVE"}
    # an adjusted p above alpha/2 turns an interval above the margin into INCONCLUSIVE, never GO
    d = decide(0.1, 0.01, 0.015, tier="critical", confidence=0.95, interval="t", p_adjusted=0.3)
    assert d.verdict == "INCONCLUSIVE" and d.p_adjusted == 0.3


def test_many_items_small_significant_drop_is_go_few_items_large_drop_is_inconclusive(tmp_path):
    """The issue's two failures of the significance gate, on per-sample files through `Baseline`:
    5000 items losing half a point (McNemar p < 0.001, which the old gate failed) is GO at margin 0.015;
    50 items losing 10 points (McNemar p = 0.0625, which the old gate passed) is INCONCLUSIVE."""
    def pair(n: int, worse: int, better: int) -> tuple[dict[str, float], dict[str, float]]:
        before = {f"i{k}": float(k % 3 != 0 or k < 2 * better) for k in range(n)}
        right = [i for i, v in before.items() if v == 1][:worse]
        wrong = [i for i, v in before.items() if v == 0][:better]
        return before, {i: (0.0 if i in right else 1.0 if i in wrong else v) for i, v in before.items()}

    for n, worse, better, verdict in ((5000, 30, 5, "GO"), (50, 6, 1, "INCONCLUSIVE")):
        before, after = pair(n, worse, better)
        base = write_run(tmp_path / f"b{n}", "s", before)
        now = write_run(tmp_path / f"n{n}", "s", after)
        from pytest_nemo_eval.report.junit import read_reports

        result = read_reports([now]).by_benchmark()["s::addition"]
        (c,) = Baseline(base).compare("s::addition", result.metrics, result.samples_file)
        mcnemar = binomtest(worse, worse + better, 0.5, alternative="greater").pvalue
        assert c.paired is not None and c.paired.p_value == pytest.approx(mcnemar)
        assert (mcnemar < 0.05) == (n == 5000)  # the old rule: regressed exactly when significant
        diffs = np.array([before[i] - after[i] for i in before])
        se = diffs.std(ddof=1) / np.sqrt(n)
        assert c.decision.drop == pytest.approx((worse - better) / n)
        assert c.decision.ci_high == pytest.approx(diffs.mean() + norm.ppf(0.975) * se)
        assert c.decision.verdict == verdict and c.regressed is False


@pytest.mark.parametrize("method, oracle", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjusted_p_values_are_statsmodels(method, oracle):
    rng = np.random.default_rng(7)
    for m in (1, 2, 5, 60):
        p = np.concatenate([rng.uniform(0, 1, m - m // 3), rng.uniform(0, 0.01, m // 3)])
        assert adjust(list(p), method) == pytest.approx(list(multipletests(p, method=oracle)[1]), rel=1e-12)


def test_the_live_bound_never_rejects_what_holm_or_bh_keeps():
    """A benchmark decided during the run uses min(1, m p): every p it rejects, Holm and BH over the
    finished family reject too (a NO-GO is never reversed afterwards)."""
    rng = np.random.default_rng(11)
    for _ in range(25):
        p = rng.uniform(0, 0.02, 12) ** rng.uniform(0.5, 2)
        live = np.array([live_bound(x, len(p)) < 0.025 for x in p])
        for oracle in ("holm", "fdr_bh"):
            rejected = multipletests(p, alpha=0.025, method=oracle)[0]
            assert not np.any(live & ~rejected)
        assert np.all(np.array([live_bound(x, len(p)) for x in p]) >= np.array(adjust(list(p), "holm")) - 1e-15)


@pytest.mark.parametrize("tier, verdict, lenient, inconclusive, expected", [
    ("critical", "NO-GO", True, "fail", "fail"),
    ("supporting", "NO-GO", False, "pass", "fail"),
    ("supporting", "NO-GO", True, "fail", "warn"),
    ("advisory", "NO-GO", False, "fail", "pass"),
    ("critical", "INCONCLUSIVE", False, "warn", "warn"),
    ("critical", "INCONCLUSIVE", False, "fail", "fail"),
    ("advisory", "INCONCLUSIVE", False, "fail", "pass"),
    ("critical", "GO", False, "fail", "pass"),
])
def test_tiers_map_to_pytest_outcomes(tier, verdict, lenient, inconclusive, expected):
    drop = {"NO-GO": 0.2, "INCONCLUSIVE": 0.02, "GO": 0.0}[verdict]
    d = decide(drop, 0.005, 0.015, tier=tier, confidence=0.95, interval="t")
    assert d.verdict == verdict
    assert effect(d, lenient=lenient, inconclusive=inconclusive) == expected


def test_relative_margin_with_its_guard():
    policy = GatePolicy(max_drop=0.01, max_relative_drop=0.05, relative_guard_below=0.2)
    assert policy.margin(0.8) == pytest.approx(0.04)  # 5% of 0.8
    assert policy.margin(0.1) == 0.01  # below the guard: the absolute margin
    assert GatePolicy().margin(0.5) == 0.015  # NeMo Evaluator's default


def test_suite_gate_defaults_merge_field_by_field_and_typos_are_named(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        defaults:
          gate: {tier: supporting, max_drop: 0.02}
          multiple_comparisons: bh
        benchmarks:
          - {name: a, harness: builtin, task: demo_addition, gate: {tier: advisory}}
          - {name: b, harness: builtin, task: demo_addition}
    """))
    a, b = load_suite(path).resolved()
    assert (a.gate.tier, a.gate.max_drop, b.gate.tier, b.gate.max_drop) == ("advisory", 0.02, "supporting", 0.02)
    assert a.multiple_comparisons == "bh"
    path.write_text(path.read_text().replace("{tier: advisory}", "{tier: advisory, maxdrop: 0.1}"))
    with pytest.raises(SuiteError, match=r"s.yaml:5: unknown field `benchmarks\[0\].gate.maxdrop` \(allowed here: "
                                         r"tier, max_drop, max_relative_drop, relative_guard_below\)"):
        load_suite(path)
    path.write_text(path.read_text().replace("maxdrop: 0.1", "relative_guard_below: 0.1"))
    with pytest.raises(SuiteError, match="`relative_guard_below` only applies with `max_relative_drop`"):
        load_suite(path)


def test_early_stop_becomes_the_builtin_harness_overrides_and_is_refused_elsewhere(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        defaults: {early_stop: true, confidence: 0.9}
        benchmarks:
          - {name: a, harness: builtin, task: demo_addition, thresholds: {exact_match: {min: 0.5, max: 0.99}}}
          - {name: b, harness: builtin, task: demo_addition}
    """))
    a, b = load_suite(path).resolved()
    assert a.early_stop and a.params == {"early_stop_metric": "exact_match", "early_stop_alpha": 0.1,
                                         "early_stop_min": 0.5, "early_stop_max": 0.99}
    assert not b.early_stop and b.params == {}  # nothing to watch: every sample runs
    path.write_text("benchmarks:\n  - {name: a, harness: simple_evals, task: mmlu, early_stop: true,"
                    " thresholds: {score: {min: 0.5}}}\n")
    with pytest.raises(SuiteError, match=r"s.yaml:2: field `benchmarks\[0\]`: Value error, `early_stop: true` needs "
                                         r"the builtin harness"):
        load_suite(path)
