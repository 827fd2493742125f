"""Real BFCL (nemo-evaluator 0.2.8 + nvidia-bfcl 26.3, pinned venv of their own) through the plugin, offline,
on the data it ships. BFCL eval()s what the model returns, so the plugin runs the whole harness under
bubblewrap. In the first test the model is the scripted echo upstream: its replies are no function calls, so
BFCL's own checker passes only its irrelevance items (the pipeline: sandbox, relay, proxy, results). In the
second the model answers with a call whose argument BFCL's decoder eval()s, and the test sees where it ran."""

from __future__ import annotations

import json
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


def _payload(home_marker: str, host_marker: Path) -> str:
    """A reply in BFCL's prompting form, `[func(arg=value)]`, whose argument is arithmetic. BFCL's output decoder
    (bfcl/model_handler/utils.py, resolve_ast_by_type) eval()s an ast.BinOp argument, so the model's text runs
    as Python inside the harness: first it writes a file in its own HOME (proof that BFCL ran it), then one on
    the host beside the test (what the sandbox must stop)."""
    def write(path_expression: str) -> str:
        return f'__import__("pathlib").Path({path_expression}).write_text("written by BFCL eval of the model reply")'

    in_home = write(f'__import__("os").path.expanduser("~/{home_marker}")')
    return f"[probe(x=0 + {in_home} + {write(json.dumps(str(host_marker)))})]"


@pytest.mark.parametrize("isolation", ["bubblewrap", "unsandboxed"])
def test_bfcl_runs_the_model_reply_inside_the_sandbox(run_inner, suite_file, pytester, monkeypatch,  # noqa: F811
                                                      bfcl_bin, tmp_path, isolation):
    """The model answers every BFCL item with a call whose argument is code; BFCL evaluates it. Under bubblewrap
    it runs (the file in the harness's HOME appears) and cannot reach the host (the file beside the test does
    not); opted out of the sandbox, the same reply writes on the host: the boundary is what stopped it."""
    from pytest_nemo_eval.harness.builtin.bubblewrap import BWRAP_ENV, bubblewrap_problem
    from pytest_nemo_eval.harness.builtin.isolation import ALLOW_UNSANDBOXED_ENV

    if isolation == "bubblewrap" and bubblewrap_problem():
        pytest.skip(f"no bubblewrap sandbox here: {bubblewrap_problem()}")
    monkeypatch.setenv("PATH", f"{bfcl_bin}{os.pathsep}{os.environ['PATH']}")
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.delenv(ALLOW_UNSANDBOXED_ENV, raising=False)
    extra = []
    if isolation == "unsandboxed":
        monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "no" / "bwrap"))
        extra = ["--nemo-allow-unsandboxed-code"]
    host_marker = tmp_path / "host" / "bfcl-reached-the-host"
    host_marker.parent.mkdir()
    home_marker = "bfcl-evaluated-the-reply"
    with ScriptedUpstream() as upstream:
        upstream.script.update({"tool_reply": {"calls": [], "content": _payload(home_marker, host_marker)}})
        suite_file("bfcl_probe", """\
            benchmarks:
              - name: bfcl_probe
                harness: bfcl
                task: bfclv2_ast_prompting
                endpoint_type: chat
                runtime: local
                limit_samples: 2
                thresholds: {non_live_overall_acc: {min: 0.0}}
        """)
        result = run_inner("bfcl_probe.yaml", f"--nemo-endpoint={upstream.url}", *extra, subprocess=True,
                           timeout=900)
        calls = upstream.script.calls
    status, props = junit_cases(pytester.path / "junit.xml")["bfcl_probe"]
    run_dir = next((pytester.path / "nemo-out" / "runs").glob("*bfcl_probe*"))  # BFCL needs 2 (a latency stdev)
    log = (run_dir / "harness.log").read_text()
    assert status == "passed", result.stdout.str()[-3000:] + log[-3000:]
    assert calls > 0 and props["nemo.code_isolation"] == isolation
    if isolation == "bubblewrap":
        assert (run_dir / "home" / home_marker).exists(), "BFCL never evaluated the reply: " + log[-2000:]
        assert not host_marker.exists(), "the model's code wrote on the host from inside the sandbox"
    else:
        assert host_marker.exists(), "unsandboxed, BFCL's eval of the reply should reach the host: " + log[-2000:]
