"""Real bigcode-evaluation-harness HumanEval (nemo-evaluator 0.2.8 + nvidia-bigcode-eval 26.3) on the demo that
the plugin deploys itself (`--nemo-checkpoint=demo`), offline (`openai_humaneval` from a local `datasets` cache
of three stock HumanEval problems, conftest.HUMANEVAL_STOCK), as a user would run it: `runtime: local` under
bubblewrap, and `runtime: docker` from the bigcode image built here where a daemon runs. Stock HumanEval prompts
are 348 to 1,360 characters: the old 128-token demo refused every one. The demo writes no working Python, so
pass@1 is whatever bigcode's own execution says (in [0, 1]); the pipeline is what is tested (on_demo.py).
Generation is kept short (32 new tokens, 3 problems, greedy), as a user would on a CPU."""

from __future__ import annotations

import os
import shutil

from tests.plugin.conftest import run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests

from .conftest import HUMANEVAL_STOCK
from .on_demo import demo_case, deployed_by_the_plugin, metric, prompt_tokens, summary

PROBLEMS = len(HUMANEVAL_STOCK.read_text().splitlines())
SUITE = """\
benchmarks:
  - name: humaneval_demo
    harness: bigcode-evaluation-harness
    task: humaneval
    runtime: {runtime}
    limit_samples: {problems}
    params: {{config.params.extra.n_samples: 1, config.params.extra.do_sample: false, config.params.temperature: 0,
              config.params.max_new_tokens: 32, config.params.parallelism: 2}}
    thresholds: {{pass@1: {{min: 0.0}}}}
"""


def offline(monkeypatch) -> None:
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")


def check(pytester, result, isolation: str) -> None:
    props = demo_case(pytester, result, "humaneval_demo")
    deployed_by_the_plugin(pytester)
    assert props["nemo.code_isolation"] == isolation
    assert int(props["nemo.proxy.requests"]) == PROBLEMS  # one greedy sample per problem
    assert max(prompt_tokens(props)) > 128  # HumanEval/129's prompt: beyond the old demo's whole context
    print(summary(f"bigcode humaneval ({isolation})", props, pass_at_1=metric(props, "pass@1", 0.0, 1.0)))


def test_bigcode_humaneval_on_the_demo_under_bubblewrap(run_inner, suite_file, pytester, monkeypatch,  # noqa: F811
                                                        demo_trained, bigcode_bin, stock_humaneval_cache):
    monkeypatch.setenv("PATH", f"{bigcode_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(stock_humaneval_cache))
    offline(monkeypatch)
    suite_file("code", SUITE.format(runtime="local", problems=PROBLEMS))
    result = run_inner("code.yaml", "--nemo-checkpoint=demo", subprocess=True, timeout=900)
    check(pytester, result, "bubblewrap")
    log = next((pytester.path / "nemo-out" / "runs").glob("*humaneval_demo/harness.log")).read_text()
    assert "bwrap --unshare-all" in log


def test_bigcode_humaneval_on_the_demo_in_docker(run_inner, suite_file, pytester, monkeypatch, demo_trained,  # noqa: F811
                                                 bigcode_image, stock_humaneval_cache):
    hf_home = pytester.path / "hf-home"
    shutil.copytree(stock_humaneval_cache, hf_home / "datasets")  # the container's HF_HOME is the dataset cache
    monkeypatch.setenv("NEMO_EVAL_DATASET_CACHE", str(hf_home))
    offline(monkeypatch)
    suite_file("code", SUITE.format(runtime="docker", problems=PROBLEMS)
               + f"    image: {bigcode_image}\n    env: [HF_DATASETS_OFFLINE, HF_HUB_OFFLINE]\n")
    result = run_inner("code.yaml", "--nemo-checkpoint=demo", subprocess=True, timeout=900)
    check(pytester, result, "container")
