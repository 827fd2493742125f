"""The demo recipe: committed held-out data, train/test separation, caching, locking, atomic writes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from pytest_nemo_eval.checkpoint import demo
from pytest_nemo_eval.checkpoint.demo_tasks import DATA_DIR, HeldOut, write_heldout_files

# Runs the real trainer with a 3-step recipe (its own cache key), so it is quick.
TINY_TRAINING = """
import sys, warnings
warnings.filterwarnings("ignore")
from pytest_nemo_eval.checkpoint import demo
demo.TRAINING = dict(demo.TRAINING, steps=int(sys.argv[2]), batch_size=8)
print(demo.ensure_demo_checkpoint(sys.argv[1], progress=lambda line: print(line, file=sys.stderr, flush=True)))
"""


def test_committed_heldout_files_are_regenerated_identically(tmp_path):
    for path in write_heldout_files(tmp_path):
        assert path.read_text() == (DATA_DIR / path.name).read_text(), path.name


def test_training_corpus_never_contains_heldout_items():
    corpus, held = demo._Corpus(seed=1234), HeldOut()
    seen_kinds = set()
    for _ in range(40000):
        kind = corpus.kind()
        text = "".join(prompt + completion for prompt, completion in corpus.sample(kind))
        seen_kinds.add(kind)
        if word := re.search(r"rev ([a-z]+)=", text):
            assert word.group(1) not in held.words, text
        else:
            pairs = re.findall(r"(\d+)(?:[+_]| plus )(\d+)", text)  # tool_use: one per round
            assert pairs and not {(int(a), int(b)) for a, b in pairs} & held.pairs, text
    assert seen_kinds == set(demo.TRAINING["mix"])
    assert set(held.tool_call) <= held.pairs


def test_cached_checkpoint_is_returned_without_training(demo_checkpoint):
    def no_training(line):
        raise AssertionError(f"should not train again: {line}")

    assert demo.ensure_demo_checkpoint(demo_checkpoint.parent, progress=no_training) == demo_checkpoint


def _tiny(cache, steps):
    return subprocess.Popen([sys.executable, "-c", TINY_TRAINING, str(cache), str(steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_processes_train_once_and_share_the_result(tmp_path):
    first, second = _tiny(tmp_path, 3), _tiny(tmp_path, 3)
    outputs = [proc.communicate(timeout=240) for proc in (first, second)]
    assert first.returncode == second.returncode == 0, outputs
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert sum("training nemo-demo-gpt" in err for _, err in outputs) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [os.path.basename(paths.pop())]


def test_interrupted_training_leaves_no_checkpoint(tmp_path):
    proc = _tiny(tmp_path, 100000)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.glob(".tmp-*")), "training did not start"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("nemo-demo-gpt")]
