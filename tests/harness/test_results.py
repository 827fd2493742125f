"""results.yml parsing: good files, eval-factory extras, and every way the file can be wrong."""

from __future__ import annotations

import pytest

from pytest_nemo_eval.harness.errors import ResultsError
from pytest_nemo_eval.harness.results import HARNESS_LOG_FILE, EvalResults, load_results

GOOD = """\
command: lm-eval --tasks mmlu        # eval-factory adds provenance keys like these
git_hash: abc123
results:
  groups:
    mmlu:
      metrics:
        acc:
          scores:
            acc: {value: 0.61, stats: {stderr: 0.004, count: 14042}}
  tasks:
    mmlu_anatomy:
      metrics:
        acc:
          scores:
            acc: {value: 0.55, stats: {stderr: 0.04, count: 135, mean: 0.55}}
        acc_norm:
          scores:
            acc_norm: {value: 0.57, stats: {stderr: 0.04}}
    gsm8k:
      metrics:
        exact_match:
          scores:
            strict-match: {value: 0.4}
            flexible-extract: {value: 0.45}
"""


def write(tmp_path, text, log_lines=0):
    (tmp_path / "results.yml").write_text(text)
    if log_lines:
        (tmp_path / HARNESS_LOG_FILE).write_text("".join(f"log line {i}\n" for i in range(log_lines)))
    return tmp_path


def test_good_results_parse_into_typed_scores(tmp_path):
    results = load_results(write(tmp_path, GOOD))
    assert isinstance(results, EvalResults)
    anatomy = results.tasks["mmlu_anatomy"].metrics["acc"].scores["acc"]
    assert anatomy.value == pytest.approx(0.55)
    assert anatomy.stats.stderr == pytest.approx(0.04) and anatomy.stats.count == 135
    assert results.groups["mmlu"].metrics["acc"].scores["acc"].stats.count == 14042
    assert set(results.flat_scores()) == {
        "mmlu.acc.acc", "mmlu_anatomy.acc.acc", "mmlu_anatomy.acc_norm.acc_norm",
        "gsm8k.exact_match.strict-match", "gsm8k.exact_match.flexible-extract",
    }


def test_get_score_narrows_and_explains_ambiguity(tmp_path):
    results = load_results(write(tmp_path, GOOD))
    assert results.get_score("acc_norm").value == pytest.approx(0.57)
    assert results.get_score("acc", task="mmlu").value == pytest.approx(0.61)
    assert results.get_score("exact_match", score="strict-match").value == pytest.approx(0.4)
    with pytest.raises(KeyError, match="ambiguous.*gsm8k.exact_match.strict-match"):
        results.get_score("exact_match")
    with pytest.raises(KeyError, match="not found.*available"):
        results.get_score("f1")


def test_missing_results_error_carries_the_last_40_log_lines(tmp_path):
    (tmp_path / HARNESS_LOG_FILE).write_text("".join(f"log line {i}\n" for i in range(100)))
    with pytest.raises(ResultsError) as info:
        load_results(tmp_path)
    message = str(info.value)
    assert "wrote no results.yml" in message
    assert "log line 99" in message and "log line 60" in message
    assert "log line 59\n" not in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("results: [unclosed", "not valid YAML"),
        ("scores: {}\n", "no top-level 'results'"),
        ("results:\n  tasks:\n    t: {metrics: {acc: {scores: {acc: {value: high}}}}}\n", "does not match"),
        ("results:\n  tasks:\n    t: {metrics: {acc: {scores: {acc: {value: .nan}}}}}\n", "is NaN"),
        ("results:\n  tasks: {}\n", "no tasks and no groups"),
    ],
    ids=["bad-yaml", "no-results-key", "wrong-type", "nan", "empty"],
)
def test_malformed_results_are_clear_errors_with_log_tail(tmp_path, text, expected):
    with pytest.raises(ResultsError, match=expected) as info:
        load_results(write(tmp_path, text, log_lines=3))
    assert "log line 2" in str(info.value)


def test_task_the_harness_ran_is_read_from_eval_factory_config(tmp_path):
    """eval-factory's eval type `mmlu` runs lm-eval's `mmlu_str` and names its results after that
    (config.params.task); thresholds must resolve against it, not against the eval type."""
    (tmp_path / "results.yml").write_text(
        "config: {params: {task: mmlu_str}, type: lm-evaluation-harness.mmlu}\n"
        "results:\n  groups:\n    mmlu_str: {metrics: {exact_match: {scores: {exact_match: {value: 0.6}}}}}\n"
    )
    results = load_results(tmp_path)
    assert results.harness_task == "mmlu_str"
    assert "harness_task" not in results.model_dump()  # never written back into a results.yml
