"""The smoke suite's code benchmark through the plugin, against the real demo server and real bwrap:
it runs under bubblewrap with exactly the per-sample results of an unsandboxed run, it is SKIPPED
with one line saying why when no sandbox can be made, and the opt-in runs it and says so in JUnit."""

from __future__ import annotations

import json
import shutil

import pytest

from pytest_nemo_eval.harness.builtin.bubblewrap import BWRAP_ENV, bubblewrap_problem
from pytest_nemo_eval.harness.builtin.isolation import ALLOW_UNSANDBOXED_ENV
from .inner_run import LIMIT, REPO, junit_cases

CODE = "demo_addition_code"


@pytest.fixture
def smoke(pytester):
    shutil.copy(REPO / "suites" / "smoke.yaml", pytester.path / "smoke.yaml")
    return "smoke.yaml"


def per_sample(pytester) -> dict[str, float]:
    samples = pytester.path / "nemo-out" / "runs" / f"smoke.{CODE}" / f"samples_{CODE}.jsonl"
    return {str(r["id"]): r["scores"]["pass@1"] for r in map(json.loads, samples.read_text().splitlines())}


def test_code_benchmark_runs_under_bubblewrap_with_the_unsandboxed_scores(
    run_inner, pytester, smoke, endpoint, monkeypatch, tmp_path
):
    problem = bubblewrap_problem()
    if problem:
        pytest.skip(f"no bubblewrap sandbox here: {problem}")
    monkeypatch.delenv(ALLOW_UNSANDBOXED_ENV, raising=False)
    result = run_inner(smoke, f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}", "-k", CODE)
    result.assert_outcomes(passed=1)
    status, props = junit_cases(pytester.path / "junit.xml")[CODE]
    assert status == "passed" and props["nemo.code_isolation"] == "bubblewrap"
    sandboxed = per_sample(pytester)
    # the same benchmark, same completions (proxy cache), samples run the way they ran before bubblewrap
    monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "no" / "bwrap"))
    result = run_inner(smoke, f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}", "-k", CODE,
                       "--nemo-allow-unsandboxed-code")
    result.assert_outcomes(passed=1)
    status, props = junit_cases(pytester.path / "junit.xml")[CODE]
    assert status == "passed" and props["nemo.code_isolation"] == "unsandboxed"
    assert len(sandboxed) == int(LIMIT) and sandboxed == per_sample(pytester)


def test_without_a_sandbox_the_code_benchmark_is_skipped_with_the_reason(
    run_inner, pytester, smoke, endpoint, monkeypatch, tmp_path
):
    monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "no" / "bwrap"))
    monkeypatch.delenv(ALLOW_UNSANDBOXED_ENV, raising=False)
    result = run_inner(smoke, f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}",
                       "-k", f"{CODE} or demo_reversal")
    result.assert_outcomes(passed=1, skipped=1)  # the other benchmark still runs
    skip_lines = [line for line in result.stdout.lines if line.startswith("SKIPPED") and CODE in line]
    assert len(skip_lines) == 1
    assert "model-written code needs a sandbox" in skip_lines[0] and "bubblewrap is not installed" in skip_lines[0]
    assert "apt-get install -y bubblewrap" in skip_lines[0] and "--nemo-allow-unsandboxed-code" in skip_lines[0]
    cases = junit_cases(pytester.path / "junit.xml")
    assert cases[CODE][0] == "skipped" and "nemo.code_isolation" not in cases[CODE][1]
    assert cases["demo_reversal"][0] == "passed" and cases["demo_reversal"][1]["nemo.code_isolation"] == "none"


def test_opt_in_by_environment_variable_runs_it_unsandboxed(run_inner, pytester, smoke, endpoint, monkeypatch,
                                                             tmp_path):
    monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "no" / "bwrap"))
    monkeypatch.setenv(ALLOW_UNSANDBOXED_ENV, "1")
    result = run_inner(smoke, f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}", "-k", CODE)
    result.assert_outcomes(passed=1)
    assert junit_cases(pytester.path / "junit.xml")[CODE][1]["nemo.code_isolation"] == "unsandboxed"


@pytest.mark.parametrize("how", ["option", "env", "ini", "none", "bad"])
def test_opt_in_is_read_from_option_env_or_ini(pytester, monkeypatch, how):
    from pytest_nemo_eval.runner.settings import read_options

    monkeypatch.delenv(ALLOW_UNSANDBOXED_ENV, raising=False)
    args = ["--nemo-allow-unsandboxed-code"] if how == "option" else []
    if how == "env":
        monkeypatch.setenv(ALLOW_UNSANDBOXED_ENV, "true")
    if how in ("ini", "bad"):
        pytester.makeini(f"[pytest]\nnemo_allow_unsandboxed_code = {'yes' if how == 'ini' else 'maybe'}\n")
    config = pytester.parseconfig(*args)
    if how == "bad":
        with pytest.raises(pytest.UsageError, match="--nemo-allow-unsandboxed-code='maybe'"):
            read_options(config)
        return
    assert read_options(config).allow_unsandboxed_code is (how != "none")


def test_levels_per_runtime_and_task_type(monkeypatch, tmp_path):
    """Docker: the container is the boundary; non-code benchmarks run no model code: level `none`."""
    from pytest_nemo_eval.runner.prerequisites import code_isolation
    from pytest_nemo_eval.suite import load_suite

    benchmarks = {b.name: b for b in load_suite(REPO / "suites" / "smoke.yaml").resolved()}
    code, plain = benchmarks[CODE], benchmarks["demo_addition"]
    assert code_isolation(code, runtime="docker", allow_unsandboxed=False).level == "container"
    assert code_isolation(plain, runtime="local", allow_unsandboxed=False).model_dump() == {"level": "none",
                                                                                          "problem": None}
    monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "no" / "bwrap"))
    assert code_isolation(code, runtime="docker", allow_unsandboxed=False).level == "container"
    assert code_isolation(code, runtime="local", allow_unsandboxed=True).level == "unsandboxed"
    refused = code_isolation(code, runtime="local", allow_unsandboxed=False)
    assert refused.level is None and "bubblewrap is not installed" in refused.problem


def test_eval_factory_tasks_that_run_model_code_are_known(monkeypatch, tmp_path):
    """Without the packages installed (an empty PATH), the table of harnesses that execute code silently
    decides; a code-execution flag in the suite's own params counts too. The same ladder then applies."""
    from pytest_nemo_eval.runner.prerequisites import code_isolation
    from pytest_nemo_eval.suite import load_suite

    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "s.yaml").write_text("""\
benchmarks:
  - {name: bigcode_mbpp, harness: bigcode-evaluation-harness, task: mbpp-chat}
  - {name: se_humaneval, harness: simple-evals, task: humaneval}
  - {name: se_math, harness: simple-evals, task: math_test_500}
  - {name: lcb, harness: livecodebench, task: codegeneration_release_v5}
  - {name: bfcl, harness: bfcl, task: bfclv2_ast}
  - {name: mt, harness: mtbench, task: mtbench}
  - {name: lm_unsafe, harness: lm-evaluation-harness, task: my_task,
     params: {config.params.extra.args: --confirm_run_unsafe_code}}
""")
    levels = {b.name: code_isolation(b, runtime="docker", allow_unsandboxed=False).level
              for b in load_suite(tmp_path / "s.yaml").resolved()}
    assert levels == {"bigcode_mbpp": "container", "se_humaneval": "container", "se_math": "none",
                      "lcb": "container", "bfcl": "container", "mt": "none",
                      "lm_unsafe": "container"}
    monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "no" / "bwrap"))
    bigcode = load_suite(tmp_path / "s.yaml").resolved()[0]
    refused = code_isolation(bigcode, runtime="local", allow_unsandboxed=False)
    assert refused.level is None and "bubblewrap is not installed" in refused.problem


def test_python_api_fixture_reports_the_level_and_skips_the_same_way(run_inner, pytester, endpoint, monkeypatch,
                                                                     tmp_path):
    pytester.makepyfile(test_api=f"""
        SPEC = {{"name": "code", "harness": "builtin", "task": "{CODE}", "thresholds": {{"pass@1": {{"min": 0.3}}}}}}

        def test_code(nemo_benchmark):
            outcome = nemo_benchmark(SPEC, defaults={{"runtime": "local"}})
            outcome.check()
            assert ("nemo.code_isolation", "bubblewrap") in outcome.properties
    """)
    monkeypatch.delenv(ALLOW_UNSANDBOXED_ENV, raising=False)
    if bubblewrap_problem() is None:
        run_inner("test_api.py", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}").assert_outcomes(
            passed=1)
    monkeypatch.setenv(BWRAP_ENV, str(tmp_path / "no" / "bwrap"))
    result = run_inner("test_api.py", f"--nemo-endpoint={endpoint}", f"--nemo-limit-samples={LIMIT}")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*code: model-written code needs a sandbox*"])
