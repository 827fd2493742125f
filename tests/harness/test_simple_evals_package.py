"""Real simple-evals MGSM (nemo-evaluator 0.2.8 + nvidia-simple-evals 26.3, pinned venv of their own) through
the plugin, offline: its `juletxara/mgsm` dataset (one config per language) is a local `datasets` cache
built from local JSONL. The model is an oracle that answers each problem's number in every language's
answer prefix, which it reads from simple-evals itself; simple-evals' parser and scorer then score it.
Oracles nobody here wrote: simple-evals' prompt, parsing and scoring, and its answer prefixes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.plugin.conftest import run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests
from tests.plugin.inner_run import junit_cases

from .conftest import HF_CACHE_BUILDER, prebuilt_venv_bin
from .oracle_upstream import OracleUpstream

PROBLEMS = Path(__file__).parent / "data" / "mgsm_local.jsonl"


@pytest.fixture(scope="session")
def simple_evals_bin() -> Path:
    """Built by scripts/test_heavy_harnesses.sh (kept out of CI's time budget); the test skips without it."""
    return prebuilt_venv_bin("simple-evals")


@pytest.fixture(scope="session")
def mgsm_prefixes(simple_evals_bin) -> dict[str, str]:
    """simple-evals' own answer prefix per MGSM language."""
    out = subprocess.run([str(simple_evals_bin / "python"), "-c", "import json\nfrom simple_evals.evals.mgsm_eval "
                          "import LANG_TO_ANSWER_PREFIX as p\nprint(json.dumps(p))"],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture(scope="session")
def mgsm_cache(simple_evals_bin, mgsm_prefixes, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf-datasets-mgsm")
    for language in mgsm_prefixes:
        built = subprocess.run([str(simple_evals_bin / "python"), str(HF_CACHE_BUILDER), str(cache),
                                f"juletxara/mgsm:{language}", f"test={PROBLEMS}"], capture_output=True, text=True,
                               timeout=300, env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
        assert built.returncode == 0, built.stderr[-3000:]
    return cache


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
