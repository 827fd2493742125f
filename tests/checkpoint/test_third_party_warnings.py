"""The plugin's own work (training the demo, loading a checkpoint) shows the user none of megatron-core's
and torch's deprecation chatter (a fresh run once ended "4 passed, 48016 warnings"), while warnings
from the user's own code still show."""

from __future__ import annotations

import json
import subprocess
import sys

# A fresh process, every warning recorded ("always"), a 3-step recipe with its own cache key.
PROBE = """
import json, sys, tempfile, warnings

def main():
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        from pytest_nemo_eval.checkpoint import demo
        from pytest_nemo_eval.checkpoint.loader import load_checkpoint
        demo.TRAINING = dict(demo.TRAINING, steps=3, batch_size=8)
        path = demo.ensure_demo_checkpoint(tempfile.mkdtemp(), progress=lambda line: None)
        load_checkpoint(path)
        warnings.warn("the user's own warning", UserWarning)
    print(json.dumps([[w.category.__name__, w.filename, str(w.message)[:120]] for w in seen]))

if __name__ == "__main__":
    main()
"""


def test_training_and_loading_raise_no_third_party_warnings_but_user_warnings_show(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    third_party = [w for w in seen if "/megatron/" in w[1] or "/torch/" in w[1] or "/pytriton/" in w[1]]
    assert third_party == [], third_party[:5]
    assert ["UserWarning", str(script), "the user's own warning"] in seen
