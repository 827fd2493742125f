"""The builtin harness stops a task once the betting confidence sequence settles its verdict (early_stop.py),
run as the plugin runs it (`nemo-eval-harness run` with overrides) against a small adder model here: a WSGI
completions server that answers a+b right except on every `WRONG_EVERY`-th item of the dataset."""

from __future__ import annotations

import json

import pytest

from pytest_nemo_eval.adapters.wsgi_thread import ServerThread
from pytest_nemo_eval.confseq import BettingCS
from pytest_nemo_eval.harness.builtin.cli import main as harness_main

WRONG_EVERY = 10  # 90% right


@pytest.fixture(scope="module")
def adder():
    seen: list[str] = []

    def app(environ, start_response):
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
        a, b = body["prompt"].rstrip("=").split("+")
        seen.append(body["prompt"])
        wrong = len(seen) % WRONG_EVERY == 0
        reply = {"id": "x", "object": "text_completion", "model": "adder",
                 "choices": [{"index": 0, "text": str(int(a) + int(b) + (1 if wrong else 0)), "finish_reason": "stop"}]}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(reply).encode()]

    server = ServerThread(app, host="127.0.0.1", port=0, threads=4, name="adder")
    server.start()
    yield server.url, seen
    server.stop(grace_s=0.5)  # nothing is in flight: the harness runs have returned


def _run(url: str, out, overrides: str) -> int:
    return harness_main(["run_eval", "--eval_type", "builtin.demo_addition", "--model_id", "adder",
                         "--model_url", f"{url}/v1/completions", "--output_dir", str(out), "--overrides", overrides])


@pytest.mark.parametrize("bound, reason", [("early_stop_min=0.5", "pass"), ("early_stop_min=0.995", "fail")])
def test_stops_when_the_sequence_settles_and_records_why(adder, tmp_path, bound, reason):
    url, seen = adder
    seen.clear()
    assert _run(url, tmp_path, f"early_stop_metric=exact_match,{bound}") == 0
    record = json.loads((tmp_path / "early_stop.json").read_text())
    samples = [json.loads(line) for line in (tmp_path / "samples_demo_addition.jsonl").read_text().splitlines()]
    assert record["reason"] == reason and record["samples_planned"] == 100
    assert record["samples_used"] == len(samples) < 100  # stopped: the per-sample file and scores end there
    # the oracle: the first sample count at which the sequence, fed the written scores in order, settles
    low = float(bound.split("=")[1])
    cs = BettingCS(0.05, extra_points=[low])
    first = next(t for t, s in enumerate(samples, 1) if (cs.update(s["scores"]["exact_match"]) or
                                                         cs.decision(low) is not None))
    assert first == record["samples_used"]
    results = (tmp_path / "results.yml").read_text()
    assert f"count: {len(samples)}" in results
    assert len(seen) < 100  # the samples after the stop were never asked for (parallelism 1)


def test_without_early_stop_every_sample_runs_and_a_wrong_metric_is_named(adder, tmp_path, capsys):
    url, _ = adder
    assert _run(url, tmp_path / "all", "limit_samples=30") == 0
    assert not (tmp_path / "all" / "early_stop.json").exists()
    assert _run(url, tmp_path / "bad", "early_stop_metric=accuracy,early_stop_min=0.5") == 1
    err = capsys.readouterr()
    assert "early_stop watches 'accuracy', which this task does not score; its metrics: exact_match" in err.out + err.err
