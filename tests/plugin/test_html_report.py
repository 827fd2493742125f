"""The HTML report, opened in a real headless Chromium: written beside the JUnit file after a
real run (and by `nemo-eval-report --html`), it loads offline with no console message, shows
the JUnit file's numbers, the failed samples, the flipped items and copyable curl commands.
Screenshots are kept in each test's pytester/tmp dir."""

from __future__ import annotations

import json
import math
import re
from statistics import NormalDist

import pytest

from pytest_nemo_eval.report.cli import main as report_main

from .browser import open_page
from .inner_run import LIMIT, junit_cases
from .test_baseline_paired import _pair, write_run
from .test_verdicts import _half_wrong_sums_task


def plot_intervals(dom: str) -> dict[str, tuple[float, float]]:
    """The interval bars of the page's score plot in score units: each bar's `<g id="interval-<benchmark>-<metric>">`
    path, its pixel ends mapped back through the x axis' tick positions and labels."""
    ticks = [(float(x), float(label.replace("\u2212", "-"))) for x, label in re.findall(
        r'<g id="xtick_\d+">\s*<g id="line2d_\d+">\s*<path d="M ([-\d.]+) .*?<text[^>]*>([^<]+)</text>', dom, re.S)]
    assert len(ticks) >= 2, ticks
    (x0, v0), (x1, v1) = ticks[0], ticks[-1]

    def score(x: str) -> float:
        return v0 + (float(x) - x0) * (v1 - v0) / (x1 - x0)

    return {gid: (score(a), score(b)) for gid, a, b in re.findall(
        r'<g id="interval-([^"]+)">\s*<path d="M ([-\d.]+) [-\d.]+\s+L ([-\d.]+) ', dom)}


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval, written out (the oracle; the product calls scipy's binomtest)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_the_browser_check_sees_console_errors(tmp_path):
    """The check below can fail: a page with console errors is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script src="https://cdn.example.com/x.js"></script>'
                    '<script>console.error("boom"); nosuch();</script></body></html>')
    result = open_page(page, tmp_path / "bad.png")
    assert any("boom" in m for m in result.console) and any("nosuch" in m for m in result.console)


def test_report_beside_the_junit_file_renders_the_run_in_chromium(run_inner, suite_file, pytester, endpoint,
                                                                  monkeypatch):
    tasks = pytester.path / "tasks"
    task = _half_wrong_sums_task(tasks)  # every other target wrong: failed samples to show
    monkeypatch.setenv("NEMO_EVAL_TASKS_PATH", str(tasks))
    suite_file("html", f"""\
        defaults: {{runtime: local}}
        benchmarks:
          - {{name: addition, harness: builtin, task: demo_addition, confidence: 0.95,
              thresholds: {{exact_match: {{min: 0.3}}}}}}
          - {{name: half_wrong, harness: builtin, task: {task}, thresholds: {{exact_match: {{min: 0.9}}}}}}
    """)
    result = run_inner("html.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}")
    result.assert_outcomes(passed=1, failed=1)
    html = pytester.path / "junit.html"
    page = open_page(html, pytester.path / "report.png")
    print(f"screenshot: {page.screenshot}")
    assert page.console == [], page.console
    assert not re.search(r"""(?:src|href)=["']https?:""", html.read_text())  # nothing fetched from anywhere
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r'data-benchmark="html::(\w+)" data-metric="exact_match">.*?<td class="num value">([0-9.]+)</td>',
        page.dom, re.S)}
    bars, normal_differs = plot_intervals(page.dom), False
    for name, (_, props) in junit_cases(pytester.path / "junit.xml").items():
        assert rows[name] == f"{float(props['nemo.metric.exact_match.value']):.4f}"  # the JUnit file's numbers
        # the plot's bar is the gate's Wilson interval of the JUnit file's value and count (with and without
        # a confidence gate), not value ± 1.96·stderr
        value, count = float(props["nemo.metric.exact_match.value"]), int(props["nemo.metric.exact_match.count"])
        expected = wilson(round(value * count), count)
        assert bars[f"html::{name}-exact_match"] == pytest.approx(expected, abs=1e-5), (name, bars)
        half = 1.96 * float(props["nemo.metric.exact_match.stderr"])
        normal_differs |= abs(value - half - expected[0]) > 0.01 or abs(value + half - expected[1]) > 0.01
    assert normal_differs  # this run can tell the two intervals apart
    assert "<svg" in page.dom and "FAIL" in page.dom and "Failed samples" in page.dom
    assert f"curl -s {endpoint}/v1/completions" in page.dom and "Authorization" not in page.dom
    requests = (pytester.path / "nemo-out" / "proxy-logs" / "html.addition" / "requests.jsonl").read_text()
    first_prompt = json.loads(requests.splitlines()[0])["body"]["prompt"]
    assert json.dumps(first_prompt)[1:-1] in page.dom.replace("&quot;", '"')


def test_report_cli_html_shows_flipped_items_in_chromium(tmp_path, capsys):
    before, after = _pair()
    base, now = write_run(tmp_path / "base", "smoke", before), write_run(tmp_path / "now", "smoke", after)
    worse = sorted(i for i in before if before[i] == 1 and after[i] == 0)
    html = tmp_path / "report.html"
    assert report_main([str(now), "--baseline", str(base), "--html", str(html)]) == 1
    page = open_page(html, tmp_path / "report.png")
    assert page.console == [], page.console
    assert f"Items that got worse ({len(worse)}) on exact_match" in page.dom
    assert all(f"<td>{item}</td>" in page.dom for item in worse) and "paired mcnemar on 200 items" in page.dom
    assert "REGRESSED" in page.dom
    # the gate policy's verdict, its interval against the margin and the Holm-adjusted p, as rendered
    assert '<span class="verdict regressed">NO-GO</span>' in page.dom
    assert "vs margin 0.0150" in page.dom and "(holm over 1)" in page.dom


def test_model_text_in_the_report_is_shown_never_run(tmp_path):
    """Prompts and answers are the model's (and a dataset's) text: a reply that writes HTML must show as text in
    the reviewer's browser, never run there."""
    before, after = _pair()
    base, now = write_run(tmp_path / "base", "smoke", before), write_run(tmp_path / "now", "smoke", after)
    payload = "</pre><script>console.error('model-written script ran')</script><pre>"
    samples = tmp_path / "now" / "per_sample.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    samples.write_text("".join(json.dumps({**row, "response": payload, "prompt": payload}) + "\n" for row in rows))
    html = tmp_path / "report.html"
    report_main([str(now), "--baseline", str(base), "--html", str(html)])
    page = open_page(html, tmp_path / "report.png")
    assert page.console == [], page.console
    assert "&lt;script&gt;console.error('model-written script ran')&lt;/script&gt;" in page.dom
