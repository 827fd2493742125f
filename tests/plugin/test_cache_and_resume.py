"""A re-gate that never loads the model, and resume after `kill -9` (issue 26 items 1 and 3).

The cache files' bad inputs (corrupt, cut short, another checkpoint's, two writers at once) are tested
on the real store classes in seconds; one test runs the plugin on the demo for real: a run killed
with SIGKILL mid-suite, the same command again (finished benchmark reused, only the missing requests
sent to the model, counted by the proxy), then a re-gate under `-n 2` that deploys nothing."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from pytest_nemo_eval.adapters.response_cache import CachedResponse, ResponseCache, set_aside_if_corrupt
from pytest_nemo_eval.checkpoint.fingerprint import SAMPLE_BYTES, SAMPLES, checkpoint_fingerprint, sample_offsets
from pytest_nemo_eval.runner.execute import HarnessOutcome
from pytest_nemo_eval.runner.resume import NemoCacheWarning, ResultStore, ResumeInputs

from .inner_run import junit_cases, junit_suite_properties


def _checkpoint(root: Path) -> Path:
    (root / "context").mkdir(parents=True)
    (root / "weights").mkdir()
    (root / "context" / "model.yaml").write_text("hidden_size: 64\n")
    (root / "weights" / "metadata.json").write_text('{"sharded_backend": "torch_dist"}')
    (root / "weights" / "__0_0.distcp").write_bytes(os.urandom(5 << 20))  # a "large" weight shard
    return root


def test_fingerprint_sees_content_not_copies(tmp_path):
    """A copy (new mtimes) keeps the identity; a changed config, or a changed byte in a sampled range of a
    weight shard, changes it."""
    original = _checkpoint(tmp_path / "a")
    before = checkpoint_fingerprint(original)
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    os.utime(copy / "weights" / "__0_0.distcp", (1, 1))
    assert checkpoint_fingerprint(copy) == before
    shard = copy / "weights" / "__0_0.distcp"
    size = shard.stat().st_size
    middle = sample_offsets(size)[SAMPLES // 2] + SAMPLE_BYTES // 2
    previous = before
    for offset in (size - 1, middle):  # the last byte, and one inside a sampled range mid-file
        with open(shard, "r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([byte[0] ^ 0xFF]))
        changed = checkpoint_fingerprint(copy)
        assert changed != previous, offset
        previous = changed
    assert middle > 2 * SAMPLE_BYTES and len(sample_offsets(size)) == SAMPLES
    shutil.rmtree(copy)
    shutil.copytree(original, copy)
    (copy / "context" / "model.yaml").write_text("hidden_size: 65\n")
    assert checkpoint_fingerprint(copy) != before


def _filled_cache(path: Path, entries: int = 200) -> None:
    cache = ResponseCache(path)
    for i in range(entries):
        cache.put(f"k{i}", CachedResponse(200, "application/json", os.urandom(3000)), replace=False)
    cache.close()


@pytest.mark.parametrize("damage", ["cut_short", "garbage", "torn_page"])
def test_a_corrupt_cache_file_is_set_aside_with_one_warning_naming_it(tmp_path, damage):
    path = tmp_path / "responses.sqlite"
    _filled_cache(path)
    assert set_aside_if_corrupt(path) is None  # a healthy cache is kept
    data = bytearray(path.read_bytes())
    if damage == "cut_short":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a database" * 500)
    else:
        middle = len(data) // 2 - (len(data) // 2) % 4096
        data[middle:middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))
    warning = set_aside_if_corrupt(path)
    assert warning is not None and str(path) in warning and "every request is a miss" in warning, warning
    assert not path.exists() and list(tmp_path.glob("responses.sqlite.corrupt-*"))
    fresh = ResponseCache(path)  # the run's cache starts empty: a miss, never a wrong answer
    assert fresh.get("k1") is None
    fresh.close()


def _inputs(checkpoint: str = "demo-nemo2-fp1-aaaa") -> ResumeInputs:
    return ResumeInputs(checkpoint=checkpoint, benchmark={"name": "b", "seed": 1}, harness="builtin",
                        harness_version="1", runtime="local", image=None, limit_samples=3)


def _outcome(value: float = 0.5) -> HarnessOutcome:
    from pytest_nemo_eval.gate import ScoreValue

    score = ScoreValue(value=value, stderr=0.1, count=3)
    return HarnessOutcome(scores={"t.acc": score, "acc": score}, flat_scores={"t.acc": score}, samples=3)


def test_result_files_bad_input_is_a_miss_with_one_warning_naming_the_file(tmp_path):
    store = ResultStore(tmp_path)
    path = store.save("s.b", _inputs(), _outcome(), str(tmp_path))
    stored = store.load("s.b", _inputs())
    assert stored is not None and stored.restored().scores["acc"] is stored.restored().flat_scores["t.acc"]
    with pytest.warns(NemoCacheWarning, match="other inputs"):  # another checkpoint's results in this folder
        assert store.load("s.b", _inputs("demo-nemo2-fp1-bbbb")) is None
    path.write_bytes(path.read_bytes()[:40])  # half-written (a copy cut short; our own writes are atomic)
    with pytest.warns(NemoCacheWarning) as caught:
        assert store.load("s.b", _inputs()) is None
    assert len(caught) == 1 and str(path) in str(caught[0].message)


def _writer(cache_path: str, results_dir: str, worker: int, count: int) -> None:
    cache = ResponseCache(Path(cache_path), busy_timeout_s=30)
    store = ResultStore(Path(results_dir))
    for i in range(count):
        body = f'{{"worker": {worker}, "i": {i}, "pad": "{"x" * 2000}"}}'.encode()
        cache.put(f"shared{i}", CachedResponse(200, "application/json", body), replace=False)  # both write these
        cache.put(f"own{worker}-{i}", CachedResponse(200, "application/json", body), replace=False)
        if i % 10 == 0:
            store.save("s.b", _inputs(), _outcome(value=worker + i / 1000), results_dir)
    cache.close()


def test_two_processes_sharing_a_cache_dir_corrupt_nothing(tmp_path):
    """Two writers at once on one cache file and one result file (as two CI jobs sharing a restored cache dir)."""
    cache_path = tmp_path / "responses.sqlite"
    ResponseCache(cache_path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(cache_path), str(tmp_path), w, 150)) for w in (1, 2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    assert set_aside_if_corrupt(cache_path) is None
    cache = ResponseCache(cache_path)
    assert cache.count() == 150 + 2 * 150
    assert all(cache.get(f"own{w}-{i}") is not None for w in (1, 2) for i in range(150))  # checksums hold
    cache.close()
    stored = ResultStore(tmp_path).load("s.b", _inputs())
    assert stored is not None and stored.outcome.samples == 3
    assert not list((tmp_path / "results").glob("*.tmp"))


def test_weightless_answers_equal_the_deployments(demo_deployment, demo_checkpoint):
    """/v1/models and the tokenizer routes answered without the weights say what the deployed server says."""
    import requests

    from pytest_nemo_eval.runner.lazy_deployment import build_weightless_front

    front = build_weightless_front(demo_checkpoint).test_client()
    url = demo_deployment.url
    live = requests.get(f"{url}/v1/models", timeout=30).json()
    local = front.get("/v1/models").get_json()
    for card in (*live["data"], *local["data"]):
        card.pop("created")
    assert local == live
    assert front.get("/tokenizer_info").get_json() == requests.get(f"{url}/tokenizer_info", timeout=30).json()
    for body in ({"prompt": "12+34="}, {"messages": [{"role": "user", "content": "hi"}]}):
        assert front.post("/tokenize", json=body).get_json() == requests.post(f"{url}/tokenize", json=body,
                                                                               timeout=30).json()
    ids = requests.post(f"{url}/tokenize", json={"prompt": "12+34="}, timeout=30).json()["tokens"]
    assert front.post("/detokenize", json={"tokens": ids}).get_json() == requests.post(
        f"{url}/detokenize", json={"tokens": ids}, timeout=30).json()


SUITE = """\
name: resume
seed: 1234
defaults: {runtime: local, endpoint_type: completions, timeout_s: 180, parallelism: 1}
benchmarks:
  - {name: first, harness: builtin, task: demo_addition, limit_samples: 2, thresholds: {exact_match: {min: 0}}}
  - {name: second, harness: builtin, task: demo_reversal, limit_samples: 12, thresholds: {exact_match: {min: 0}}}
"""
FIRST_REQUESTS = 2


def _pytest(cwd: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "resume.yaml", "--nemo-checkpoint=demo",
            f"--nemo-output-dir={out}", f"--junitxml={out / 'junit.xml'}", *extra]


def _cached(path: Path) -> int:
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


@pytest.mark.demo_model  # deploys `--nemo-checkpoint=demo` in inner runs
def test_kill_9_mid_suite_then_rerun_reuses_and_resumes_then_a_regate_deploys_nothing(tmp_path, demo_checkpoint):
    (tmp_path / "resume.yaml").write_text(textwrap.dedent(SUITE))
    out, cache = tmp_path / "out", tmp_path / "out" / "cache"
    process = subprocess.Popen(_pytest(tmp_path, out), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        # the first benchmark finished (its result stored), the second has some answers cached
        while not (list((cache / "results").glob("resume.first--*.json"))
                   and _cached(cache / "responses.sqlite") >= FIRST_REQUESTS + 3):
            assert process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the suite never got into its second benchmark"
            time.sleep(0.05)
        tree = psutil.Process(process.pid).children(recursive=True)  # the deployment, in its own session
        os.killpg(process.pid, signal.SIGKILL)  # as a CI job killed: no teardown runs
        for child in tree:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        process.wait(30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    cached_second = _cached(cache / "responses.sqlite") - FIRST_REQUESTS
    assert not (out / "junit.xml").exists()  # it really died mid-suite

    again = subprocess.run(_pytest(tmp_path, out), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    cases = junit_cases(out / "junit.xml")
    first, second = cases["first"][1], cases["second"][1]
    assert "/results/resume.first--" in first["nemo.reused_from"]  # the finished benchmark is reused
    assert "nemo.reused_from" not in second
    requests, hits = float(second["nemo.proxy.requests"]), float(second["nemo.proxy.cache_hits"])
    sent = float(second["nemo.proxy.upstream_calls"])
    assert hits >= cached_second > 0 and sent == requests - hits and sent < requests, second
    assert junit_suite_properties(out / "junit.xml")["nemo.deployments"] == "1"  # for the missing requests

    regate = tmp_path / "regate"  # another output dir, the same cache dir, results re-run: all hits, no model
    warm = subprocess.run([*_pytest(tmp_path, regate, "--nemo-rerun", "-n", "2"), f"--nemo-cache-dir={cache}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert warm.returncode == 0, warm.stdout[-3000:]
    assert junit_suite_properties(regate / "junit.xml")["nemo.deployments"] == "0"
    assert "deploying" not in warm.stdout
    for _, props in junit_cases(regate / "junit.xml").values():
        assert "nemo.reused_from" not in props
        assert props["nemo.proxy.cache_hits"] == props["nemo.proxy.requests"] != "0", props


def test_an_upgraded_local_harness_is_not_reused(tmp_path, monkeypatch):
    """A local eval-factory run's resume key holds the distributions installed beside its `nemo-evaluator`: the
    same command after `pip install -U nvidia-lm-eval` in that venv is another harness and runs afresh; the
    builtin harness's key is the plugin's version alone."""
    from pytest_nemo_eval.runner.resume import harness_build

    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    (venv / "bin").mkdir(parents=True)
    cli = venv / "bin" / "nemo-evaluator"
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    for name in ("nemo_evaluator-0.2.8.dist-info", "nvidia_lm_eval-26.3.dist-info"):
        (site / name).mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    before = harness_build("lm-evaluation-harness", "local", None)
    assert before == ["nemo_evaluator-0.2.8.dist-info", "nvidia_lm_eval-26.3.dist-info"]
    (site / "nvidia_lm_eval-26.3.dist-info").rename(site / "nvidia_lm_eval-26.4.dist-info")
    assert harness_build("lm-evaluation-harness", "local", None) != before
    assert harness_build("builtin", "local", None) == []
