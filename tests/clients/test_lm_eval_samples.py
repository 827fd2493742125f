"""lm-eval's logged samples (the files NeMo Evaluator's lm-evaluation-harness always writes with
`--log_samples`) become samples.py's per-sample shape. The files are written by lm-eval itself
(its EvaluationTracker, as its CLI does) from a real run against the demo deployment."""

from __future__ import annotations

import json

import pytest

from pytest_nemo_eval.samples import collect_samples, read_samples

from .test_lm_eval import LIMIT, run_lm_eval, task_dir  # noqa: F401  (module fixture)


@pytest.mark.parametrize("task, metric", [("demo_gen_completion", "exact_match"), ("demo_mc_completion", "acc")])
def test_lm_eval_logged_samples_in_the_documented_shape(base_url, model_id, task_dir, tmp_path, task, metric):  # noqa: F811
    from lm_eval.loggers import EvaluationTracker

    samples = run_lm_eval(base_url, model_id, task, task_dir)
    expected = {str(s["doc_id"]): (s["doc"]["prompt"], float(s[metric])) for s in samples}
    tracker = EvaluationTracker(output_path=str(tmp_path / "out"))
    tracker.general_config_tracker.model_name_sanitized = "demo"
    tracker.date_id = "2026-01-01T00-00-00"  # save_results_aggregated sets it first in lm-eval's CLI
    tracker.save_results_samples(task_name=task, samples=json.loads(json.dumps(samples, default=str)))
    assert list((tmp_path / "out" / "demo").glob(f"samples_{task}_*.jsonl"))  # where lm-eval put them

    records = read_samples(collect_samples(tmp_path / "out"))
    assert len(records) == LIMIT
    for item_id, (prompt, score) in expected.items():
        record = records[item_id]
        assert record.prompt == prompt and record.scores[metric] == score
        assert record.expected is not None and record.response
    if metric == "exact_match":
        by_id = {str(s["doc_id"]): s for s in samples}
        assert all(records[i].response == by_id[i]["filtered_resps"][0] for i in records)
