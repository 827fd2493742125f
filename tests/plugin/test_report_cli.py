"""`nemo-eval-report` on JUnit files shaped like the plugin's (written here by hand so every
case — regression, noise, new benchmark, shards — is pinned; tests/plugin/test_verdicts.py
runs it on real plugin output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_nemo_eval.report.cli import main
from pytest_nemo_eval.report.junit import read_reports


def case(name: str, metrics: dict[str, tuple[float, float | None]], *, failed: bool = False,
         threshold: str = ">= 0.5") -> str:
    props = [f'<property name="nemo.benchmark" value="smoke::{name}"/>', '<property name="nemo.samples" value="100"/>']
    for metric, (value, stderr) in metrics.items():
        props.append(f'<property name="nemo.metric.{metric}.value" value="{value}"/>')
        if stderr is not None:
            props.append(f'<property name="nemo.metric.{metric}.stderr" value="{stderr}"/>')
        props.append(f'<property name="nemo.metric.{metric}.threshold" value="{threshold.replace(">", "&gt;").replace("<", "&lt;")}"/>')
        props.append(f'<property name="nemo.metric.{metric}.verdict" value="{"fail" if failed else "pass"}"/>')
    result = '<failure message="missed">missed</failure>' if failed else ""
    return f'<testcase classname="smoke.yaml" name="{name}"><properties>{"".join(props)}</properties>{result}</testcase>'


def lines(text: str) -> list[str]:
    """Table rows with runs of spaces collapsed (column widths depend on the content)."""
    return [" ".join(line.split()) for line in text.splitlines()]


def junit(path: Path, *cases: str, provenance: str = "") -> Path:
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="1">'
        f'<properties>{provenance}</properties>{"".join(cases)}</testsuite></testsuites>'
    )
    return path


def test_table_as_text_and_markdown(tmp_path, capsys):
    report = junit(tmp_path / "a.xml", case("addition", {"exact_match": (0.91, 0.028)}),
                   case("mc", {"acc": (0.42, 0.05)}, failed=True), case("skipped_one", {}))
    assert main([str(report)]) == 0
    out = capsys.readouterr().out
    assert "smoke::addition exact_match 0.9100 ± 0.0280 >= 0.5 PASS" in lines(out)
    assert "smoke::mc acc 0.4200 ± 0.0500 >= 0.5 FAIL" in lines(out)
    assert "smoke::skipped_one - - - PASSED" in lines(out)
    assert main([str(report), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "| benchmark | metric | score | threshold | verdict |"
    assert "| smoke::addition | exact_match | 0.9100 ± 0.0280 | >= 0.5 | PASS |" in out


def test_merge_shards_into_one_file(tmp_path, capsys):
    one = junit(tmp_path / "gw0.xml", case("addition", {"exact_match": (0.9, None)}))
    two = junit(tmp_path / "gw1.xml", case("reversal", {"exact_match": (0.5, None)}))
    merged = tmp_path / "all.xml"
    assert main([str(one), str(two), "--merge", str(merged)]) == 0
    assert sorted(read_reports([merged]).by_benchmark()) == ["smoke::addition", "smoke::reversal"]


def test_baseline_regression_fails_and_noise_does_not(tmp_path, capsys):
    """Unpaired (no per-sample files): the drop's interval drop ± 1.96·sqrt(se1² + se2²) against the default
    margin 0.015. mc's interval lies above it (NO-GO: exit 1); addition's straddles it (INCONCLUSIVE: reported,
    not a regression). p raw = 1 − Φ((drop − margin)/se); Holm over the 2 critical comparisons doubles the smaller."""
    from scipy.stats import norm

    base = junit(tmp_path / "base.xml", case("addition", {"exact_match": (0.90, 0.03)}),
                 case("mc", {"acc": (0.60, 0.05)}))
    now = junit(tmp_path / "now.xml", case("addition", {"exact_match": (0.88, 0.03)}),
                case("mc", {"acc": (0.30, 0.05)}), case("new_one", {"acc": (0.5, None)}))
    assert main([str(now), "--baseline", str(base)]) == 1
    out = capsys.readouterr().out
    se_mc, se_add = (0.05**2 * 2) ** 0.5, (0.03**2 * 2) ** 0.5
    p_mc, p_add = norm.sf((0.30 - 0.015) / se_mc), norm.sf((0.02 - 0.015) / se_add)
    z = norm.ppf(0.975)
    assert (f"smoke::mc acc 0.6000 0.3000 -0.3000 0.0150 [{0.3 - z * se_mc:+.4f}, {0.3 + z * se_mc:+.4f}] "
            f"NO-GO (REGRESSED) {p_mc:.3g} {2 * p_mc:.3g} unpaired") in lines(out)
    assert (f"smoke::addition exact_match 0.9000 0.8800 -0.0200 0.0150 [{0.02 - z * se_add:+.4f}, "
            f"{0.02 + z * se_add:+.4f}] INCONCLUSIVE {p_add:.3g} {p_add:.3g} unpaired") in lines(out)
    assert "NEW (not in baseline)" in out
    assert "1 regression(s)" in out and "1 inconclusive" in out
    # a margin above mc's whole interval: GO for mc, so nothing fails (the deprecated --tolerance sets it too)
    assert main([str(now), "--baseline", str(base), "--max-drop", "0.45"]) == 0
    assert any(row.startswith("smoke::mc acc 0.6000 0.3000 -0.3000 0.4500") and " GO " in row
               for row in lines(capsys.readouterr().out))
    assert main([str(now), "--baseline", str(base), "--tolerance", "0.45"]) == 0
    assert "--tolerance is deprecated" in capsys.readouterr().err


def test_lower_is_better_metric_regresses_upwards(tmp_path, capsys):
    base = junit(tmp_path / "base.xml", case("latency", {"error_rate": (0.05, None)}, threshold="<= 0.1"))
    now = junit(tmp_path / "now.xml", case("latency", {"error_rate": (0.09, None)}, threshold="<= 0.1"))
    assert main([str(now), "--baseline", str(base)]) == 1
    assert main([str(base), "--baseline", str(now)]) == 0


@pytest.mark.parametrize("content, message", [
    ("not xml at all", "Cannot read JUnit file"),
    ('<testsuites><testsuite name="x"><testcase name="t"/></testsuite></testsuites>', "no nemo-eval benchmark"),
])
def test_bad_reports_exit_2_with_a_message(tmp_path, capsys, content, message):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    assert main([str(path)]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope.xml")]) == 2
    assert "nope.xml" in capsys.readouterr().err
