"""Real simple-evals MGSM (nemo-evaluator 0.2.8 + nvidia-simple-evals 26.3, pinned venv of their own) through
the plugin, offline: its `juletxara/mgsm` dataset (one config per language) is a local `datasets` cache
built from local JSONL. The model is an oracle that answers each problem's number in every language's
answer prefix, which it reads from simple-evals itself; simple-evals' parser and scorer then score it.
Oracles nobody here wrote: simple-evals' prompt, parsing and scoring, and its answer prefixes."""

from __future__ import annotations

import os


from tests.plugin.conftest import run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests
from tests.plugin.inner_run import junit_cases

from .conftest import MGSM_PROBLEMS as PROBLEMS
from .oracle_upstream import OracleUpstream


def test_simple_evals_mgsm_offline_through_the_plugin(run_inner, suite_file, pytester, monkeypatch,  # noqa: F811
                                                      simple_evals_bin, mgsm_cache, mgsm_prefixes):
    monkeypatch.setenv("PATH", f"{simple_evals_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(mgsm_cache))
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    languages = len(mgsm_prefixes)
    problems = len(PROBLEMS.read_text().splitlines())
    with OracleUpstream(PROBLEMS, question_key="question", answer_key="answer_number",
                        prefixes=sorted(set(mgsm_prefixes.values()))) as oracle:
        suite_file("se", """\
            benchmarks:
              - name: mgsm
                harness: simple-evals
                task: mgsm
                endpoint_type: chat
                runtime: local
                params: {config.params.parallelism: 2, config.params.max_new_tokens: 64}
                thresholds: {mgsm.score.micro: {min: 0.99}, en.score.micro: {min: 0.99}, ja.score.micro: {min: 0.99},
                             sw.score.micro: {min: 0.99}}
        """)
        result = run_inner("se.yaml", f"--nemo-endpoint={oracle.url}", subprocess=True, timeout=900)
        asked = len(oracle.requests)
    status, props = junit_cases(pytester.path / "junit.xml")["mgsm"]
    log = next((pytester.path / "nemo-out" / "runs").glob("*/harness.log")).read_text()
    assert status == "passed", result.stdout.str()[-3000:] + log[-3000:]
    metrics = {k: float(v) for k, v in props.items() if k.startswith("nemo.metric.") and k.endswith(".value")}
    assert metrics and all(value == 1.0 for value in metrics.values()), metrics
    assert props["nemo.code_isolation"] == "none"
    assert asked == int(props["nemo.proxy.requests"]) == languages * problems
