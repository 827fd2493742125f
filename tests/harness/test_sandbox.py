"""The code sandbox: passing, failing, looping, network-using and memory-hungry samples."""

from __future__ import annotations

import pytest

from pytest_nemo_eval.harness.builtin.sandbox import network_isolation_prefix, run_sandboxed


def test_passing_and_failing_programs():
    assert run_sandboxed("def f(x):\n    return x * 2\nassert f(2) == 4\n").status == "passed"
    failed = run_sandboxed("assert 1 + 1 == 3, 'arithmetic'\n")
    assert failed.status == "failed" and "AssertionError" in failed.detail


def test_infinite_loop_is_killed_at_the_timeout():
    result = run_sandboxed("while True:\n    pass\n", timeout_s=1.5)
    assert result.status == "timeout"


def test_python_sockets_are_refused():
    result = run_sandboxed("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n")
    assert result.status == "failed" and "network access is disabled" in result.detail


def test_memory_limit_stops_a_hungry_sample():
    result = run_sandboxed("blob = bytearray(2 * 1024 ** 3)\n", memory_mb=256)
    assert result.status == "failed" and "MemoryError" in result.detail


def test_child_processes_have_no_network_when_namespaces_are_available():
    """A child process bypasses the in-process socket guard; only the network namespace stops it."""
    if not network_isolation_prefix():
        pytest.skip("kernel refuses `unshare -n`/`-rn` here: only the in-process socket guard applies")
    program = (
        "import subprocess, sys\n"
        "probe = 'import socket; socket.create_connection((\"1.1.1.1\", 80), timeout=2)'\n"
        "subprocess.run([sys.executable, '-c', probe], check=True)\n"
    )
    result = run_sandboxed(program, timeout_s=10)
    assert result.status == "failed"
    assert "CalledProcessError" in result.detail
