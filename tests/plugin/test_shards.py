"""`--nemo-shard I/N` and `nemo-eval-report merge` (issue 26 item 4): two shards of a suite, each its own
run against the shared demo server, merged, score exactly as one serial run; bad specs and mixed
reports are refused with one clear paragraph."""

from __future__ import annotations

import json

import pytest

from pytest_nemo_eval.report.cli import main as report_main
from pytest_nemo_eval.results import RunResult
from pytest_nemo_eval.runner.shards import assign, parse_shard
from .inner_run import junit_suite_properties

SUITE = """\
name: sharded
seed: 1234
defaults: {runtime: local, endpoint_type: completions, parallelism: 4}
benchmarks:
  - {name: addition, harness: builtin, task: demo_addition, thresholds: {exact_match: {min: 0.5}}}
  - {name: mc, harness: builtin, task: demo_addition_mc, thresholds: {acc: {min: 0.5}}}
"""
SAMPLES = "6"


def test_split_balances_recorded_durations_and_every_item_lands_once():
    durations = {"s::a": 50.0, "s::b": 30.0, "s::c": 20.0, "s::d": 10.0}
    shards = assign(list(durations), durations, 2)
    loads = [sum(d for k, d in durations.items() if shards[list(durations).index(k)] == i) for i in range(2)]
    assert sorted(loads) == [50.0, 60.0]  # longest first onto the lighter shard: {a, d}, {b, c}
    assert assign(list(durations), durations, 2) == shards  # deterministic: every shard computes the same split
    unknown = assign(["s::x", "s::y", "s::z"], {}, 3)
    assert sorted(unknown) == [0, 1, 2]
    assert parse_shard(" 2/3 ").index == 2
    for bad in ("3/2", "0/2", "2", "a/b", "1/0"):
        with pytest.raises(ValueError, match="is not I/N"):
            parse_shard(bad)


def _run(pytester, name: str, endpoint: str, *args: str):
    junit = pytester.path / name / "gate.xml"
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "sharded.yaml", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={SAMPLES}",
        "--nemo-output-dir", str(pytester.path / name / "out"), "--junitxml", str(junit), *args)
    return result, junit


def test_two_shards_merged_equal_one_serial_run(pytester, endpoint, capsys):
    (pytester.path / "sharded.yaml").write_text(SUITE)
    serial, serial_xml = _run(pytester, "serial", endpoint)
    serial.assert_outcomes(passed=2)
    shards = []
    for index in (1, 2):
        result, junit = _run(pytester, f"shard{index}", endpoint, f"--nemo-shard={index}/2",
                             f"--nemo-shard-durations={serial_xml}")
        assert f"shard {index}/2 (balanced by 2 recorded durations)" in result.stdout.str()
        shards.append((result, junit))
    ran = [r.parseoutcomes().get("passed", 0) for r, _ in shards]
    assert ran == [1, 1] and sum(r.parseoutcomes().get("deselected", 0) for r, _ in shards) == 2
    assert junit_suite_properties(shards[0][1])["nemo.shard"] == "1/2"

    merged = pytester.path / "merged" / "gate.xml"
    capsys.readouterr()
    assert report_main(["merge", str(shards[0][1]), str(shards[1][1]), "-o", str(merged),
                        "--baseline", str(serial_xml), "--html", str(pytester.path / "merged" / "gate.html")]) == 0
    out = capsys.readouterr().out
    assert "0 regression(s)" in out
    one = RunResult.read_json(serial_xml.with_name("gate.results.json")).by_benchmark()
    both = RunResult.read_json(merged.with_name("gate.results.json"))
    assert set(both.by_benchmark()) == set(one) == {"sharded::addition", "sharded::mc"}
    for benchmark, result in both.by_benchmark().items():
        assert result.status == one[benchmark].status == "passed"
        assert {m: (v.value, v.stderr, v.count) for m, v in result.metrics.items()} == \
            {m: (v.value, v.stderr, v.count) for m, v in one[benchmark].metrics.items()}
    props = junit_suite_properties(merged)
    assert props["nemo.shards"] == "2" and "nemo.shard" not in props and props["nemo.deployments"] == "0"
    assert (pytester.path / "merged" / "gate.html").is_file()


def test_bad_shard_spec_is_a_usage_error(pytester):
    endpoint = "http://127.0.0.1:9"  # never reached: the settings are refused first
    (pytester.path / "sharded.yaml").write_text(SUITE)
    result, _ = _run(pytester, "bad", endpoint, "--nemo-shard=3/2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--nemo-shard='3/2'" in result.stderr.str() and "is not I/N with 1 <= I <= N" in result.stderr.str()
    result, _ = _run(pytester, "bad", endpoint, "--nemo-shard=1/2", "--nemo-shard-durations=nowhere.xml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "nowhere.xml does not exist" in result.stderr.str()


def _shard_file(tmp_path, name: str, shard: str | None, benchmarks: list[str], **provenance: str):
    case = ''.join(f'<testcase classname="s.yaml" name="{b}"><properties><property name="nemo.benchmark" '
                   f'value="s::{b}"/><property name="nemo.metric.acc.value" value="0.5"/></properties></testcase>'
                   for b in benchmarks)
    facts = {"nemo.checkpoint_sha256": "aa" * 32, "nemo.suite.s.sha256": "bb" * 32, "nemo.deployments": "1",
             **({"nemo.shard": shard} if shard else {}), **provenance}
    props = "".join(f'<property name="{k}" value="{v}"/>' for k, v in facts.items())
    path = tmp_path / f"{name}.xml"
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest"><properties>{props}</properties>'
                    f'{case}</testsuite></testsuites>')
    return path


@pytest.mark.parametrize("second, message", [
    ({"nemo.checkpoint_sha256": "cc" * 32}, "different models (nemo.checkpoint_sha256"),
    ({"nemo.suite.s.sha256": "dd" * 32}, "different suites ('s' differs"),
    ({"nemo.shard.plan": "ee", "nemo.shard": "2/2"}, "different suites ('collected' differs"),
    ({"nemo.shard": "2/3"}, "split the suite differently"),
    ({"nemo.shard": "1/2"}, "Shard 1/2 is given twice"),
    ({"nemo.shard": ""}, "is not a shard"),
])
def test_merge_refuses_reports_of_different_runs(tmp_path, capsys, second, message):
    first = _shard_file(tmp_path, "one", "1/2", ["a"], **({"nemo.shard.plan": "ff"} if "nemo.shard.plan" in second
                                                           else {}))
    other = _shard_file(tmp_path, "two", second.pop("nemo.shard", "2/2"), ["b"], **second)
    assert report_main(["merge", str(first), str(other), "-o", str(tmp_path / "m.xml")]) == 2
    err = capsys.readouterr().err
    assert message in err and not (tmp_path / "m.xml").exists()


def test_merge_refuses_a_missing_shard_and_an_overlap(tmp_path, capsys):
    one = _shard_file(tmp_path, "one", "1/2", ["a"])
    two = _shard_file(tmp_path, "two", "2/2", ["a"])
    assert report_main(["merge", str(one), str(two), "-o", str(tmp_path / "m.xml")]) == 2
    assert "Benchmark s::a is in both" in capsys.readouterr().err
    one = _shard_file(tmp_path, "one", "1/3", ["a"])
    two = _shard_file(tmp_path, "two", "2/3", ["b"])
    assert report_main(["merge", str(one), str(two), "-o", str(tmp_path / "m.xml")]) == 2
    assert "Shard(s) 3/3 missing" in capsys.readouterr().err
    three = _shard_file(tmp_path, "three", "3/3", ["c"])
    assert report_main(["merge", str(one), str(two), str(three), "-o", str(tmp_path / "m.xml")]) == 0
    merged = json.loads((tmp_path / "m.results.json").read_text())
    assert [b["benchmark"] for b in merged["benchmarks"]] == ["s::a", "s::b", "s::c"]
    assert merged["provenance"]["nemo.deployments"] == "3" and merged["provenance"]["nemo.shards"] == "3"
