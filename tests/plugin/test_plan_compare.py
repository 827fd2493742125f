"""`nemo-eval-report plan` (items needed at a margin, from the baseline's per-item variance: the textbook
sample-size formula written out here) and `nemo-eval-report compare --show-flips` (verdicts and the flipped
items with both answers) on JUnit and per-sample files in the plugin's shapes (test_baseline_paired.write_run);
tests/plugin/test_baseline_paired.py runs both on the demo's own runs."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from pytest_nemo_eval.report.cli import main

from .test_baseline_paired import _pair, write_run
from .test_report_cli import case, junit, lines


def test_plan_is_the_sample_size_formula_from_the_baseline_variance(tmp_path, capsys):
    before, _ = _pair()
    base = write_run(tmp_path / "base", "smoke", before)
    assert main(["plan", "--baseline", str(base), "--max-drop", "0.01"]) == 0
    sd = float(np.std(list(before.values()), ddof=1))
    need = math.ceil(2 * sd**2 * (norm.ppf(0.975) + norm.ppf(0.8)) ** 2 / 0.01**2)
    assert f"smoke::addition exact_match {np.mean(list(before.values())):.4f} {sd:.4f} 200 {need} no: " \
           f"{need / 200:.1f}x the items" in lines(capsys.readouterr().out)
    # without per-sample files: stderr * sqrt(count); a wide enough margin is decided now
    stderr_only = junit(tmp_path / "s.xml", case("mc", {"acc": (0.6, 0.02)}))
    assert main(["plan", "--baseline", str(stderr_only), "--max-drop", "0.2"]) == 0
    need = math.ceil(2 * (0.02 * 10) ** 2 * (norm.ppf(0.975) + norm.ppf(0.8)) ** 2 / 0.2**2)
    assert f"smoke::mc acc 0.6000 0.2000 100 {need} yes" in lines(capsys.readouterr().out)
    assert main(["plan", "--baseline", str(stderr_only), "--max-drop", "0"]) == 2


def test_compare_shows_the_verdicts_and_the_flipped_items_with_both_answers(tmp_path, capsys):
    before, after = _pair()
    old, new = write_run(tmp_path / "old", "smoke", before), write_run(tmp_path / "new", "smoke", after)
    html = tmp_path / "cmp.html"
    assert main(["compare", str(old), str(new), "--show-flips", "--html", str(html)]) == 1
    out = capsys.readouterr().out
    worse = sorted(i for i in before if before[i] == 1 and after[i] == 0)
    assert any(row.startswith("smoke::addition exact_match") and "NO-GO (REGRESSED)" in row for row in lines(out))
    assert f"smoke::addition exact_match: items that got worse ({len(worse)})" in out
    for item in worse[:20]:  # write_run's prompt is '<id>=', the old answer '1', the new '0'
        assert f"  {item}: prompt '{item}=' | expected '1' | before '1' | now '0'" in out
    page = html.read_text()
    assert f"Items that got worse ({len(worse)}) on exact_match" in page and "NO-GO" in page
    # the same pair the other way round: nothing got worse, the better items are listed, exit 0
    assert main(["compare", str(new), str(old), "--show-flips"]) == 0
    assert f"items that got better ({len(worse)})" in capsys.readouterr().out
