"""`nemo-eval-report --baseline` with per-sample files: paired test, flipped items, and every
fallback to the unpaired comparison (missing, corrupt, overwritten per-sample data; another
suite; different items). JUnit and per-sample files are written here in the plugin's shapes."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pytest_nemo_eval.report.baseline import NemoBaselineWarning
from pytest_nemo_eval.report.cli import main
from pytest_nemo_eval.report.cli import main as report_main
from pytest_nemo_eval.samples import SampleRecord


def write_run(folder: Path, suite: str, scores: dict[str, float], *, samples: bool = True,
              reported: float | None = None) -> Path:
    """A JUnit file with one benchmark `<suite>::addition` (exact_match = mean of `scores`, its stderr)
    and, when `samples`, its per-sample file in samples.py's shape."""
    folder.mkdir(parents=True, exist_ok=True)
    values = np.array(list(scores.values()))
    mean = float(values.mean()) if reported is None else reported
    stderr = float(values.std(ddof=1) / np.sqrt(len(values)))
    per_sample = folder / "per_sample.jsonl"
    props = [("nemo.benchmark", f"{suite}::addition"), ("nemo.metric.exact_match.value", repr(mean)),
             ("nemo.metric.exact_match.stderr", repr(stderr)), ("nemo.metric.exact_match.direction", "higher")]
    if samples:
        per_sample.write_text("".join(
            SampleRecord(item_id=i, prompt=f"{i}=", expected="1", response=str(int(v)),
                         scores={"exact_match": v}).model_dump_json() + "\n" for i, v in scores.items()))
        props.append(("nemo.samples_file", str(per_sample)))
    xml = "".join(f'<property name="{n}" value="{v}"/>' for n, v in props)
    path = folder / "junit.xml"
    path.write_text('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="1">'
                    f'<testcase classname="s.yaml" name="addition"><properties>{xml}</properties></testcase>'
                    '</testsuite></testsuites>')
    return path


def _pair(n: int = 200, lose: float = 0.07, seed: int = 5) -> tuple[dict[str, float], dict[str, float]]:
    rng = np.random.default_rng(seed)
    before = (rng.random(n) < 0.7).astype(float)
    after = np.where((before == 1) & (rng.random(n) < lose), 0.0, before)
    ids = [f"add-{i}" for i in range(n)]
    return dict(zip(ids, before)), dict(zip(ids, after))


def test_paired_comparison_lists_flipped_items_where_unpaired_sees_noise(tmp_path, capsys):
    before, after = _pair()
    base, now = write_run(tmp_path / "base", "smoke", before), write_run(tmp_path / "now", "smoke", after)
    worse = sorted(i for i in before if before[i] == 1 and after[i] == 0)
    assert main([str(now), "--baseline", str(base)]) == 1
    out = " ".join(capsys.readouterr().out.split())  # table columns padded to their content
    assert "NO-GO (REGRESSED)" in out and "mcnemar p=" in out
    assert f"paired mcnemar on 200 items: drop {len(worse) / 200:+.4f}" in out
    assert f"{len(worse)} worse / 0 better" in out and f"worse: {', '.join(worse[:20])}" in out
    # the same two runs without per-sample files: the unpaired margin calls it noise, and says why
    base_u = write_run(tmp_path / "base_u", "smoke", before, samples=False)
    now_u = write_run(tmp_path / "now_u", "smoke", after, samples=False)
    assert main([str(now_u), "--baseline", str(base_u)]) == 0
    assert "unpaired: the baseline kept no per-sample scores" in capsys.readouterr().out


def test_corrupt_per_sample_file_warns_with_file_and_line_then_compares_unpaired(tmp_path, capsys):
    before, after = _pair()
    base, now = write_run(tmp_path / "base", "smoke", before), write_run(tmp_path / "now", "smoke", after)
    per_sample = tmp_path / "base" / "per_sample.jsonl"
    lines = per_sample.read_text().splitlines()
    lines[41] = lines[41][:30]  # a truncated line, as a killed writer leaves it
    per_sample.write_text("\n".join(lines) + "\n")
    with pytest.warns(NemoBaselineWarning, match=rf"per-sample file {per_sample} line 42 "):
        assert main([str(now), "--baseline", str(base)]) == 0
    assert "unpaired: per-sample file" in capsys.readouterr().out


def test_overwritten_baseline_samples_are_not_trusted(tmp_path, capsys):
    """The per-sample file no longer matches the baseline's reported score (a later run in the
    same output dir rewrote it): compared unpaired, saying so."""
    before, after = _pair()
    base = write_run(tmp_path / "base", "smoke", before, reported=0.95)
    now = write_run(tmp_path / "now", "smoke", after)
    main([str(now), "--baseline", str(base)])
    assert "overwritten by a later run?" in capsys.readouterr().out


def test_other_suite_and_different_items_are_named_then_compared(tmp_path, capsys):
    before, after = _pair()
    del before["add-0"], before["add-1"]
    after["extra-1"] = 1.0
    base = write_run(tmp_path / "base", "release", before)
    now = write_run(tmp_path / "now", "smoke", after)
    assert main([str(now), "--baseline", str(base)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "has no 'smoke::addition'; compared with 'release::addition' (suite 'release', not 'smoke')" in out
    assert "items differ: 0 only in the baseline, 3 only in this run; paired on the 198 shared" in out
    assert "paired mcnemar on 198 items" in out


def test_per_sample_shape_is_documented_fields(tmp_path):
    """The builtin harness's samples_<task>.jsonl become per_sample.jsonl in the documented shape."""
    from pytest_nemo_eval.samples import collect_samples, read_samples

    (tmp_path / "samples_demo_addition.jsonl").write_text(json.dumps(
        {"id": 7, "prompt": "3+4=", "response": "7", "target": "7", "scores": {"exact_match": 1.0},
         "details": {"extracted": "7"}}) + "\n")
    path = collect_samples(tmp_path)
    assert json.loads(path.read_text()) == {"item_id": "7", "prompt": "3+4=", "expected": "7", "response": "7",
                                            "scores": {"exact_match": 1.0}, "cluster": None}
    assert read_samples(path)["7"].score("exact_match.exact_match") == 1.0


def test_samples_kept_beside_the_baseline_report_win_over_an_overwritten_output_dir(tmp_path, capsys):
    """A later run rewrote the recorded per-sample file; the copy kept in `junit.samples/`
    (report/json_file.py) is what the baseline's scores came from, so the comparison stays paired."""
    before, after = _pair()
    base = write_run(tmp_path / "base", "smoke", before)
    (tmp_path / "base" / "junit.samples").mkdir()
    shutil.copy(tmp_path / "base" / "per_sample.jsonl", tmp_path / "base" / "junit.samples")
    now = write_run(tmp_path / "now", "smoke", after)
    shutil.copy(tmp_path / "now" / "per_sample.jsonl", tmp_path / "base" / "per_sample.jsonl")  # the later run
    assert main([str(now), "--baseline", str(base)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "NO-GO (REGRESSED)" in out and "paired mcnemar" in out


def _per_sample(path: Path, metric: str) -> dict[str, tuple[float, str]]:
    """{item id: (score, response)} of a per-sample file, read as plain JSON lines (not through samples.py)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {str(row["item_id"]): (float(row["scores"][metric]), row["response"]) for row in rows}


def test_paired_gate_in_a_real_session_junit_and_html(run_inner, pytester, endpoint, capsys):
    """The smoke suite on the demo twice through the plugin: a greedy baseline, then a candidate that samples
    at a temperature with a seed (suite `params`), gated with `--nemo-baseline` on the first run's JUnit (and the
    `.samples/` kept beside it, as a CI artifact travels). The comparison of a 0/1 metric must be paired: the
    JUnit properties and the HTML report name the method (McNemar), the items paired and the items that
    flipped each way, and those flips are the ones the two runs' per-sample files show (the oracle, read here
    as plain JSON), with McNemar's p from the discordant counts."""
    from scipy.stats import binomtest

    from pytest_nemo_eval.report.html import MAX_SAMPLES_SHOWN

    from .inner_run import LIMIT, REPO, junit_cases

    smoke = (REPO / "suites" / "smoke.yaml").read_text()
    (pytester.path / "smoke.yaml").write_text(smoke)
    args = ("smoke.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}")
    first = run_inner(*args)
    assert first.ret == 0, first.stdout.str()[-3000:]
    baseline = pytester.path / "baseline.xml"
    shutil.move(pytester.path / "junit.xml", baseline)
    shutil.move(pytester.path / "junit.samples", pytester.path / "baseline.samples")
    before = _per_sample(pytester.path / "baseline.samples" / Path(
        junit_cases(baseline)["demo_addition"][1]["nemo.samples_file"]).name, "exact_match")

    # the candidate: the same suite, sampling hot with a seed (a model that really answers differently)
    assert "  timeout_s: 180" in smoke
    (pytester.path / "smoke.yaml").write_text(smoke.replace(
        "  timeout_s: 180", "  timeout_s: 180\n  params: {config.params.temperature: 3.0, config.params.seed: 11}"))
    run_inner(*args, f"--nemo-baseline={baseline}")
    cases = junit_cases(pytester.path / "junit.xml")
    status, props = cases["demo_addition"]
    now = _per_sample(Path(props["nemo.samples_file"]), "exact_match")
    assert set(now) == set(before) and len(now) == int(LIMIT)
    assert any(now[i][1] != before[i][1] for i in now), "the candidate must answer differently on some items"
    worse = sorted(i for i in now if before[i][0] == 1 and now[i][0] == 0)
    better = sorted(i for i in now if before[i][0] == 0 and now[i][0] == 1)
    assert worse or better, "no item flipped: the candidate does not differ on exact_match"

    key = "nemo.baseline.exact_match."
    assert props[key + "method"] == "mcnemar" and props[key + "n"] == LIMIT
    assert props[key + "baseline"] == junit_cases(baseline)["demo_addition"][1]["nemo.metric.exact_match.value"]
    assert int(props[key + "worse"]) == len(worse) and int(props[key + "better"]) == len(better)
    assert sorted(json.loads(props[key + "worse_items"])) == worse
    assert sorted(json.loads(props[key + "better_items"])) == better
    p = binomtest(len(worse), len(worse) + len(better), 0.5, alternative="greater").pvalue
    assert float(props[key + "p_value"]) == pytest.approx(p, rel=1e-9)
    # the gate's verdict: the paired drop's 95% interval (textbook: mean ± 1.96·sd/√n) against the default margin
    from scipy.stats import norm

    diffs = np.array([before[i][0] - now[i][0] for i in sorted(now)])
    low, high = diffs.mean() + norm.ppf([0.025, 0.975]) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    verdict = "NO-GO" if low > 0.015 else ("GO" if high <= 0.015 else "INCONCLUSIVE")
    assert props[key + "verdict"] == verdict and props[key + "tier"] == "critical"
    assert props[key + "drop_ci"] == f"[{low:.6g}, {high:.6g}]" and float(props[key + "margin"]) == 0.015
    assert props[key + "regressed"] == ("true" if verdict == "NO-GO" else "false")
    assert props[key + "correction"].startswith("bonferroni bound over ")  # the live run's family bound
    # every benchmark of the suite was compared, each one paired on the same LIMIT items
    for name, (_, case_props) in cases.items():
        methods = {k: v for k, v in case_props.items() if k.startswith("nemo.baseline.") and k.endswith(".method")}
        assert methods and set(methods.values()) <= {"mcnemar", "permutation"}, (name, methods)

    # the HTML report beside the JUnit file: the same paired comparison and the flipped items with both responses
    page = (pytester.path / "junit.html").read_text()
    section = page.split('<h2 id="smoke::demo_addition">', 1)[1].split("<h2 ", 1)[0]
    flat = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", section)).split())
    assert f"paired mcnemar on {LIMIT} items" in flat
    assert f"{len(worse)} worse / {len(better)} better" in flat
    assert f"{verdict} (critical): drop" in flat
    for way, ids in (("worse", worse), ("better", better)):
        if ids:
            assert f"Items that got {way} ({len(ids)}) on exact_match" in flat
            table = section.split(f"Items that got {way} ({len(ids)}) on exact_match", 1)[1].split("</table>", 1)[0]
            for i in ids[:MAX_SAMPLES_SHOWN]:  # the page shows that many per table
                rows = [html.unescape(r) for r in re.findall(rf"<tr><td>{re.escape(i)}</td>.*?</tr>", table, re.S)]
                assert len(rows) == 1, (way, i, table[:2000])
                assert f"<pre>{before[i][1]}</pre><td><pre>{now[i][1]}</pre>".replace("<td>", "</td><td>") in rows[0]

    # `plan` and `compare` on the demo's own two runs: the items the baseline needs at margin 0.01 (its
    # per-item sd from the kept per-sample copy, the textbook formula) and every flipped item with both answers
    from scipy.stats import norm

    capsys.readouterr()
    assert report_main(["plan", "--baseline", str(baseline), "--max-drop", "0.01"]) == 0
    values = [v for v, _ in before.values()]
    sd = float(np.std(values, ddof=1)) or math.sqrt((sum(values) + 0.5) / (len(values) + 1)
                                                    * (1 - (sum(values) + 0.5) / (len(values) + 1)))
    need = math.ceil(2 * sd**2 * (norm.ppf(0.975) + norm.ppf(0.8)) ** 2 / 0.01**2)
    plan = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert any(row.startswith("smoke::demo_addition exact_match ") and f" {LIMIT} {need} " in row for row in plan)
    assert report_main(["compare", str(baseline), str(pytester.path / "junit.xml"), "--show-flips"]) == (
        1 if verdict == "NO-GO" else 0)
    out = capsys.readouterr().out
    for i in worse[:MAX_SAMPLES_SHOWN]:
        flat_before, flat_now = " ".join(before[i][1].split()), " ".join(now[i][1].split())
        assert f"  {i}: prompt " in out and f"| before {repr(flat_before[:120])[:-1]}" in out.split(f"  {i}: prompt ", 1)[1]
        assert repr(flat_now[:120])[:-1] in out.split(f"  {i}: prompt ", 1)[1]
