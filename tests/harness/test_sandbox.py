"""The code sandbox, run for real: honest samples pass, hostile ones are blocked or contained.

Every hostile sample below is what a model could emit; each runs through bwrap
exactly as the harness runs a code sample (no mock), and the test checks the host
afterwards: planted files intact, no secret in the output, no process left behind.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_nemo_eval.harness.builtin import bubblewrap as bw
from pytest_nemo_eval.harness.builtin.isolation import ALLOW_UNSANDBOXED_ENV, NoSandbox, resolve_isolation
from pytest_nemo_eval.harness.builtin.sandbox import SCRATCH_MB, network_isolation_prefix, run_sandboxed
from pytest_nemo_eval.harness.errors import HarnessFailed
from pytest_nemo_eval.harness.runtime import HarnessInvocation, run_harness
from pytest_nemo_eval.runner.options import env_name

NO_BWRAP = bw.bubblewrap_problem()
needs_bwrap = pytest.mark.skipif(NO_BWRAP is not None, reason=f"no bubblewrap sandbox here: {NO_BWRAP}")


def marked_processes(marker: str) -> list[int]:
    """Host processes whose command line carries `marker` (what a sample may have left running)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def wait_until_gone(marker: str, within_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while (left := marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# ---- honest samples, limits that were there before -------------------------------------------


@pytest.mark.parametrize("isolation", ["bubblewrap", "unsandboxed"])
def test_passing_and_failing_programs(isolation):
    if isolation == "bubblewrap" and NO_BWRAP:
        pytest.skip(NO_BWRAP)
    assert run_sandboxed("def f(x):\n    return x * 2\nassert f(2) == 4\n", isolation=isolation).status == "passed"
    failed = run_sandboxed("assert 1 + 1 == 3, 'arithmetic'\n", isolation=isolation)
    assert failed.status == "failed" and "AssertionError" in failed.detail


STDLIB_PROGRAMS = [  # what HumanEval-style solutions use; each asserts on its own result
    "import math\nassert math.isclose(math.sqrt(2) ** 2, 2) and math.gcd(84, 36) == 12\n",
    "from itertools import permutations\nassert len(list(permutations(range(5)))) == 120\n",
    "from collections import Counter\nassert Counter('hello').most_common(1) == [('l', 2)]\n",
    "import re\nassert re.findall(r'\\d+', 'a1b22c333') == ['1', '22', '333']\n",
    "import json\nassert json.loads(json.dumps({'a': [1, 2.5, None]})) == {'a': [1, 2.5, None]}\n",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nassert fib(20) == 6765\n",
    "assert 2 ** 200 % 1_000_007 == pow(2, 200, 1_000_007) and round(0.1 + 0.2, 10) == 0.3\n",
    "assert sorted(['b', 'A', 'c'], key=str.lower) == ['A', 'b', 'c'] and f'{3.14159:.2f}' == '3.14'\n",
    "import hashlib\nassert hashlib.sha256(b'x').hexdigest().startswith('2d711642')\n",
    "assert 0.1 + 0.2 == 0.3\n",  # False in any CPython: the verdicts must agree on failures too
    "def f(:\n    pass\n",
]


@needs_bwrap
def test_honest_verdicts_equal_plain_cpython(tmp_path):
    """Oracle: the same programs run by plain CPython (this interpreter, no sandbox, no guard): 9 pass, 2 fail."""
    for index, program in enumerate(STDLIB_PROGRAMS):
        script = tmp_path / f"p{index}.py"
        script.write_text(program)
        expected = subprocess.run([sys.executable, str(script)], capture_output=True).returncode == 0
        assert run_sandboxed(program).passed is expected, program


@needs_bwrap
def test_infinite_loop_is_killed_at_the_timeout():
    result = run_sandboxed("while True:\n    pass\n", timeout_s=1.5)
    assert result.status == "timeout"


@needs_bwrap
def test_python_sockets_are_refused():
    result = run_sandboxed("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n")
    assert result.status == "failed" and "network access is disabled" in result.detail


@needs_bwrap
def test_memory_bomb_hits_the_memory_limit():
    result = run_sandboxed("blob = bytearray(2 * 1024 ** 3)\n", memory_mb=256)
    assert result.status == "failed" and "MemoryError" in result.detail


@needs_bwrap
def test_disk_bomb_fills_only_the_capped_private_scratch():
    """Many 10 MB files (each under the file-size limit): the private tmpfs runs out, the host's disk is untouched."""
    program = (
        "import os\n"
        "for i in range(1000):\n"
        "    with open(f'blob{i}', 'wb') as f:\n"
        "        f.write(os.urandom(1 << 20) * 9)\n"
    )
    result = run_sandboxed(program, timeout_s=20)
    assert result.status == "failed" and "No space left on device" in result.detail
    assert SCRATCH_MB < 100


# ---- hostile samples: the boundary --------------------------------------------------------------


@needs_bwrap
def test_writing_outside_the_working_directory_is_blocked(tmp_path):
    target = tmp_path / "written-by-sample.txt"
    system = "/usr/written-by-sample"
    result = run_sandboxed(f"open({str(target)!r}, 'w').write('pwned')\n")
    assert result.status == "failed" and "No such file or directory" in result.detail
    result = run_sandboxed(f"open({system!r}, 'w').write('pwned')\n")
    assert result.status == "failed" and "Read-only file system" in result.detail
    # /tmp is writable but private: the host's /tmp never sees it
    host_tmp = Path("/tmp") / f"nemo-sandbox-escape-{secrets.token_hex(6)}"
    assert run_sandboxed(f"open({str(host_tmp)!r}, 'w').write('pwned')\n").status == "passed"
    assert not target.exists() and not Path(system).exists() and not host_tmp.exists()


@needs_bwrap
def test_deleting_a_file_the_test_owns_is_blocked(tmp_path):
    owned = tmp_path / "owned.txt"
    owned.write_text("keep me")
    program = (
        "import os, shutil\n"
        f"os.remove({str(owned)!r})\n"
    )
    result = run_sandboxed(program)
    assert result.status == "failed" and "FileNotFoundError" in result.detail
    result = run_sandboxed(f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n")
    assert result.status == "failed"
    assert owned.read_text() == "keep me"


@needs_bwrap
def test_reading_a_planted_secret_file_or_environment_is_blocked(tmp_path, monkeypatch):
    """The sample hunts for the secret everywhere it might be: the file, its own environment, and the
    environment of every process it can see in /proc (the harness's parent would hold it). It exits 0
    only when it found it."""
    token = secrets.token_hex(16)
    secret = tmp_path / "secret.txt"
    secret.write_text(token)
    monkeypatch.setenv("NEMO_TEST_SECRET", token)
    program = (
        "import os, glob, sys\n"
        f"token = {token[:8]!r} + {token[8:]!r}\n"  # the sample knows it, so finding it proves a leak
        "found = []\n"
        f"for path in [{str(secret)!r}, *glob.glob('/proc/*/environ')]:\n"
        "    try:\n"
        "        if token in open(path, errors='replace').read():\n"
        "            found.append(path)\n"
        "    except OSError:\n"
        "        pass\n"
        "if token in str(dict(os.environ)):\n"
        "    found.append('environ')\n"
        "print('visible pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        "sys.exit(0 if found else 3)\n"
    )
    result = run_sandboxed(program)
    assert result.status == "failed" and result.detail.startswith("visible pids [1, 2")
    assert secret.read_text() == token


@needs_bwrap
def test_host_processes_cannot_be_seen_or_signalled():
    """The test's own PID and a sacrificial host child: neither exists in the sandbox's PID namespace."""
    victim = subprocess.Popen(["sleep", "60"])
    try:
        program = (
            "import os, signal\n"
            "hits = []\n"
            f"for pid in ({os.getpid()}, {victim.pid}):\n"
            "    try:\n"
            "        os.kill(pid, signal.SIGKILL if pid == " + str(victim.pid) + " else 0)\n"
            "        hits.append(pid)\n"
            "    except ProcessLookupError:\n"
            "        pass\n"
            f"assert not hits and not os.path.exists('/proc/{os.getpid()}'), hits\n"
        )
        result = run_sandboxed(program)
        assert result.status == "passed", result.detail  # the sample's own assert: nothing seen, nothing hit
        assert victim.poll() is None, "the sandbox killed a host process"
    finally:
        victim.kill()
        victim.wait()


@pytest.fixture
def listener():
    """A TCP listener on 127.0.0.1 that records every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list[tuple] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except OSError:
                continue
            accepted.append(peer)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


@needs_bwrap
def test_no_network_even_around_the_python_guard(listener):
    """A child process (the in-process socket guard does not reach it) connects to a listener the test runs."""
    port, accepted = listener
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    program = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {probe!r}], check=True)\n"
    result = run_sandboxed(program, timeout_s=10)
    assert result.status == "failed" and "CalledProcessError" in result.detail
    time.sleep(0.3)
    assert accepted == []


@needs_bwrap
def test_fork_bomb_is_capped_and_killed():
    """First measure the cap (children that sleep until fork fails), then a real bomb: it runs into the
    cap, is killed at the timeout, and nothing of it is left on the host when run_sandboxed returns."""
    counting = (
        "import os, time\n"
        "children = 0\n"
        "while children < 200:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    children += 1\n"
        "raise SystemExit(f'forked {children}')\n"
    )
    result = run_sandboxed(counting, max_processes=8, timeout_s=10)
    assert result.status == "failed" and result.detail.startswith("forked ")
    assert int(result.detail.split()[1]) <= 8 - 2  # bwrap's init and the sample count too
    marker = f"nemo-fork-bomb-{secrets.token_hex(6)}"
    bomb = f"# {marker}\nimport os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    program = f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {bomb!r}])\n"
    result = run_sandboxed(program, max_processes=8, timeout_s=2)
    assert result.status == "timeout"
    assert marked_processes(marker) == []  # run_sandboxed returns once the sandbox's PID namespace is empty


@needs_bwrap
def test_processes_left_running_die_with_the_sample():
    marker = f"nemo-leftover-{secrets.token_hex(6)}"
    sleeper = f"# {marker}\nimport time\ntime.sleep(120)\n"
    program = (
        "import os, subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', {sleeper!r}], start_new_session=True)\n"
        "if os.fork() == 0:\n"  # a double-forked daemon as well
        "    os.setsid()\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', {sleeper!r}])\n"
        "import time\ntime.sleep(0.5)\n"
    )
    result = run_sandboxed(program, timeout_s=10)
    assert result.status == "passed"
    assert marked_processes(marker) == []  # the namespace's init exits only after the kernel killed the rest


# ---- no boundary: skip or explicit opt-in --------------------------------------------------------


@pytest.fixture
def no_bwrap(monkeypatch, tmp_path):
    """Point the sandbox at a bwrap that does not exist (a real configuration, as on a machine without it)."""
    monkeypatch.setenv(bw.BWRAP_ENV, str(tmp_path / "missing" / "bwrap"))
    monkeypatch.delenv(ALLOW_UNSANDBOXED_ENV, raising=False)


def test_without_bubblewrap_code_is_refused_with_the_reason(no_bwrap):
    assert "bubblewrap is not installed" in bw.bubblewrap_problem()
    with pytest.raises(NoSandbox, match="--nemo-allow-unsandboxed-code") as refused:
        resolve_isolation("auto")
    assert "apt-get install -y bubblewrap" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(NoSandbox):
        run_sandboxed("assert True\n", isolation="bubblewrap")


def test_without_bubblewrap_the_opt_in_runs_code_unsandboxed(no_bwrap, monkeypatch):
    assert env_name("allow-unsandboxed-code") == ALLOW_UNSANDBOXED_ENV  # plugin and harness read one variable
    monkeypatch.setenv(ALLOW_UNSANDBOXED_ENV, "1")
    assert resolve_isolation("auto") == "unsandboxed"
    with pytest.raises(NoSandbox):
        resolve_isolation("bubblewrap")  # asking for the boundary explicitly never falls back
    assert resolve_isolation("container") == "container"


def test_harness_refuses_code_tasks_before_any_request_without_a_sandbox(no_bwrap, tmp_path, closed_port_url):
    """The harness CLI on its own (as eval-factory would start it): one clear error, not a score."""
    inv = HarnessInvocation(harness="builtin", task="demo_addition_code", model_id="m", model_url=closed_port_url,
                            output_dir=tmp_path / "out", timeout_s=60)
    with pytest.raises(HarnessFailed, match="model-written code needs a sandbox and none can be made here"):
        run_harness(inv)


def test_the_unshare_fallback_still_cuts_the_network_for_the_container_level(listener):
    """`container`/`unsandboxed` keep what the sandbox did before: a network namespace when the kernel allows."""
    if not network_isolation_prefix():
        pytest.skip("kernel refuses `unshare -n`/`-rn` here: only the in-process socket guard applies")
    port, accepted = listener
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    program = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {probe!r}], check=True)\n"
    assert run_sandboxed(program, timeout_s=10, isolation="container").status == "failed"
    time.sleep(0.3)
    assert accepted == []


def test_probe_names_why_bwrap_cannot_run(monkeypatch, tmp_path):
    """A bwrap that exists but fails (here: `false`) is reported with what it said, not as a pass."""
    monkeypatch.setenv(bw.BWRAP_ENV, "false")
    assert bw.bubblewrap_problem().startswith("bwrap cannot make a sandbox here")
    if os.geteuid() == 0:
        monkeypatch.setenv(bw.BWRAP_ENV, "bwrap")
        monkeypatch.setenv(bw.SANDBOX_UID_ENV, "0")
        assert "must not run as root" in bw.bubblewrap_problem()


@needs_bwrap
def test_a_killed_harness_takes_its_running_samples_with_it():
    """SIGKILL the process that runs the sandbox (as the runtime does on timeout/Ctrl-C): --die-with-parent
    ends the sample, though it sits in a session of its own."""
    marker = f"nemo-orphan-{secrets.token_hex(6)}"
    sample = (  # the marker is assembled inside, so only the sample's process carries it, not the runner's
        f"import os, sys\nmarker = {marker[:8]!r} + {marker[8:]!r}\n"
        "os.execv(sys.executable, [sys.executable, '-c', '# ' + marker + '\\nimport time\\ntime.sleep(120)'])\n"
    )
    runner = (
        "from pytest_nemo_eval.harness.builtin.sandbox import run_sandboxed\n"
        f"run_sandboxed({sample!r}, timeout_s=120)\n"
    )
    harness = subprocess.Popen([sys.executable, "-c", runner])
    try:
        deadline = time.monotonic() + 30
        while not marked_processes(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marked_processes(marker), "the sample never started"
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    assert wait_until_gone(marker) == []


def test_control_the_same_file_attacks_succeed_without_the_sandbox(tmp_path):
    """The control for the tests above: unsandboxed, these samples DO write, delete and read the test's files,
    so their failing under bubblewrap is the boundary's doing, not a broken sample."""
    target, owned, secret = tmp_path / "written.txt", tmp_path / "owned.txt", tmp_path / "secret.txt"
    owned.write_text("keep me")
    secret.write_text("s3cret")
    assert run_sandboxed(f"open({str(target)!r}, 'w').write('pwned')\n", isolation="unsandboxed").passed
    assert target.read_text() == "pwned"
    assert run_sandboxed(f"import os\nos.remove({str(owned)!r})\n", isolation="unsandboxed").passed
    assert not owned.exists()
    leaked = run_sandboxed(f"raise SystemExit(open({str(secret)!r}).read())\n", isolation="unsandboxed")
    assert leaked.detail == "s3cret"


def test_code_task_in_a_container_runs_at_the_container_level_with_the_same_results(
    tmp_path, harness_image, completions_url
):
    """Docker runtime: the container is the boundary (no bwrap in the image); per-sample results equal a
    local run's under bubblewrap, same model, same completions."""
    import json

    def per_sample(runtime: str) -> tuple[dict, list[str]]:
        lines: list[str] = []
        run = run_harness(HarnessInvocation(
            harness="builtin", task="demo_addition_code", model_id="demo", model_url=completions_url,
            runtime=runtime, output_dir=tmp_path / runtime, limit_samples=12, parallelism=4, timeout_s=600,
            **({"image": harness_image} if runtime == "docker" else {}),
        ), on_log=lines.append)
        records = (run.output_dir / "samples_demo_addition_code.jsonl").read_text().splitlines()
        return {r["id"]: (r["response"], r["scores"]["pass@1"]) for r in map(json.loads, records)}, lines

    in_container, container_log = per_sample("docker")
    assert any("runs under isolation container" in line for line in container_log)
    if NO_BWRAP:
        pytest.skip(f"no bubblewrap here to compare with: {NO_BWRAP}")
    local, local_log = per_sample("local")
    assert any("runs under isolation bubblewrap" in line for line in local_log)
    assert in_container == local and sum(score for _, score in local.values()) > 0
