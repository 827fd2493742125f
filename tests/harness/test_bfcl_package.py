"""Real BFCL (nemo-evaluator 0.2.8 + nvidia-bfcl 26.3, pinned venv of their own) through the plugin, offline,
on the data it ships. BFCL eval()s what the model returns, so the plugin runs the whole harness under
bubblewrap. The model is the scripted echo upstream: its replies are no function calls, so BFCL's own
checker passes only its irrelevance items — the pipeline (sandbox, relay, proxy, results) is what is tested."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.adapters.scripted_upstream import ScriptedUpstream
from tests.plugin.conftest import run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests
from tests.plugin.inner_run import junit_cases

from .conftest import prebuilt_venv_bin

LIMIT = 3


@pytest.fixture(scope="session")
def bfcl_bin() -> Path:
    """Built by scripts/test_heavy_harnesses.sh (kept out of CI's time budget); the test skips without it."""
    return prebuilt_venv_bin("bfcl")


def test_bfcl_ast_through_the_plugin_under_bubblewrap(run_inner, suite_file, pytester, monkeypatch,  # noqa: F811
                                                      bfcl_bin):
    monkeypatch.setenv("PATH", f"{bfcl_bin}{os.pathsep}{os.environ['PATH']}")
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    with ScriptedUpstream() as upstream:
        suite_file("bfcl", f"""\
            benchmarks:
              - name: bfcl_ast
                harness: bfcl
                task: bfclv2_ast
                endpoint_type: chat
                runtime: local
                limit_samples: {LIMIT}
                params: {{config.params.parallelism: 2}}
                thresholds: {{non_live_overall_acc: {{min: 0.0}}, irrelevance_detection_non_live: {{min: 0.0}}}}
        """)
        result = run_inner("bfcl.yaml", f"--nemo-endpoint={upstream.url}", subprocess=True, timeout=900)
        calls = upstream.script.calls
    status, props = junit_cases(pytester.path / "junit.xml")["bfcl_ast"]
    log = next((pytester.path / "nemo-out" / "runs").glob("*/harness.log")).read_text()
    assert status == "passed", result.stdout.str()[-3000:] + log[-3000:]
    assert props["nemo.code_isolation"] == "bubblewrap" and "bwrap --unshare-all" in log
    assert calls == int(props["nemo.proxy.requests"]) > 0
    # BFCL scores in percent; the echo model never calls a function, which BFCL's irrelevance checker counts
    # as right every time, and which no other category accepts
    assert float(props["nemo.metric.irrelevance_detection_non_live.value"]) == 100.0
    assert 0.0 < float(props["nemo.metric.non_live_overall_acc.value"]) < 100.0
