"""Bad input fails fast with one clear message, before any model or harness starts."""

from __future__ import annotations

import re
import socket
import textwrap

import pytest

SUITE = textwrap.dedent("""\
    benchmarks:
      - name: addition
        harness: builtin
        task: demo_addition
        thresholds:
          exact_match: {min: 0.5}
""")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_checkpoint_and_no_endpoint(run_inner, suite_file):
    suite_file("s", SUITE)
    result = run_inner("s.yaml")
    assert result.ret == 4  # pytest's usage-error exit status
    result.stderr.fnmatch_lines(["ERROR: pytest-nemo-eval: No model to evaluate*--nemo-checkpoint=PATH*"])


def test_checkpoint_and_endpoint_both_given(run_inner, suite_file):
    suite_file("s", SUITE)
    result = run_inner("s.yaml", "--nemo-checkpoint=demo", "--nemo-endpoint=http://127.0.0.1:1")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: pytest-nemo-eval: Both --nemo-checkpoint (demo) and --nemo-endpoint*Give exactly one*"])


def test_env_var_counts_as_a_setting(run_inner, suite_file, monkeypatch):
    """NEMO_EVAL_* variables are the options' equivalents: here they conflict with the option."""
    suite_file("s", SUITE)
    monkeypatch.setenv("NEMO_EVAL_CHECKPOINT", "demo")
    result = run_inner("s.yaml", "--nemo-endpoint=http://127.0.0.1:1")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*Both --nemo-checkpoint (demo) and --nemo-endpoint*"])


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_unreachable_endpoint_fails_fast_with_one_message(run_inner, suite_file, xdist):
    suite_file("s", SUITE + "  - {name: second, harness: builtin, task: demo_reversal}\n")
    url = f"http://127.0.0.1:{closed_port()}"
    result = run_inner("s.yaml", f"--nemo-endpoint={url}", *xdist, subprocess=bool(xdist))
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"ERROR: pytest-nemo-eval: The endpoint {url} is unreachable*No benchmark was run*"])
    assert result.stderr.str().count("unreachable") == 1
    assert not re.search(r"\d+ (passed|failed|error)", result.stdout.str())  # no benchmark ran


def test_suite_typo_is_a_collection_error_with_file_line_field(run_inner, suite_file):
    path = suite_file("s", SUITE.replace("thresholds:", "threshold:"))
    result = run_inner("s.yaml", "--nemo-endpoint=http://127.0.0.1:1")
    assert result.ret == 2  # interrupted by a collection error; no endpoint check, no deploy
    result.stdout.fnmatch_lines([f"*{path}:5: unknown field `benchmarks[[]0[]].threshold` (allowed here: name, *"])
    assert "unreachable" not in result.stderr.str()


def test_unknown_runtime_in_suite_and_on_command_line(run_inner, suite_file):
    path = suite_file("s", "defaults:\n  runtime: podman\n" + SUITE)
    result = run_inner("s.yaml", "--nemo-endpoint=http://127.0.0.1:1")
    assert result.ret == 2
    result.stdout.fnmatch_lines([f"*{path}:2: field `defaults.runtime`: Input should be 'docker', 'local' or 'auto'*"])
    result = run_inner("s.yaml", "--nemo-runtime=podman")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*argument --nemo-runtime: invalid choice: 'podman'*"])


def test_bad_numeric_setting_names_the_option(run_inner, suite_file):
    suite_file("s", SUITE)
    result = run_inner("s.yaml", "--nemo-endpoint=http://127.0.0.1:1", "--nemo-limit-samples=lots")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*invalid setting(s): --nemo-limit-samples='lots'*"])


def test_plugin_is_inert_without_suites_or_options(run_inner, pytester):
    """A plain test run: no deployment, no score table, YAML files left alone."""
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    (pytester.path / "config.yaml").write_text("benchmarks: [not, a, suite, here]\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "nemo-eval scores" not in result.stdout.str()
    assert not (pytester.path / ".nemo-eval").exists()


def test_markers_and_k_select_benchmarks(pytester, suite_file):
    """Markers from the YAML work with -m; benchmark names with -k; ids read `file::name`."""
    suite_file("s", SUITE.replace("thresholds:", "markers: [math]\n    thresholds:")
               + "  - {name: reverse, harness: builtin, task: demo_reversal, markers: [strings]}\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "s.yaml", "--collect-only", "-q",
                                          "--nemo-endpoint=http://127.0.0.1:1", "-m", "math")
    result.stdout.fnmatch_lines(["s.yaml::addition", "1/2 tests collected (1 deselected)*"])
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "s.yaml", "--collect-only", "-q",
                                          "--nemo-endpoint=http://127.0.0.1:1", "-k", "reverse")
    result.stdout.fnmatch_lines(["s.yaml::reverse", "1/2 tests collected (1 deselected)*"])


def test_suite_glob_from_ini_collects_suites(pytester, suite_file):
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "gate.yaml").write_text(SUITE)
    pytester.makeini("[pytest]\nnemo_suite_files = suites/*.yaml\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q",
                                          "--nemo-endpoint=http://127.0.0.1:1")
    result.stdout.fnmatch_lines(["suites/gate.yaml::addition"])
