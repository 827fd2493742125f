"""harness_sandbox.user_hf_home and hf_caches against huggingface_hub itself: the oracle is
`huggingface_hub.constants`, which computes HF_HOME and HF_HUB_CACHE once at import from the
environment (`~` and `$VAR` expanded), so the cases run in a child process that reloads it per case."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = """
import importlib, json, os, sys
from pathlib import Path
from huggingface_hub import constants
from pytest_nemo_eval.harness import harness_sandbox
NAMES = ("HF_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
found = {}
for case, values in json.loads(sys.argv[1]).items():
    for name in NAMES:
        os.environ.pop(name, None)
    os.environ.update(values)
    importlib.reload(constants)  # it reads the environment at import; nothing else in this child uses it
    Path(constants.HF_HUB_CACHE).mkdir(parents=True, exist_ok=True)  # hf_caches lists existing folders only
    found[case] = {"ours": str(harness_sandbox.user_hf_home()), "hub": constants.HF_HOME,
                   "ours_hub": str(harness_sandbox.hf_caches().get("HF_HUB_CACHE")),
                   "hub_hub": str(Path(constants.HF_HUB_CACHE).resolve())}
print(json.dumps(found))
"""

# Empty values are left out: huggingface_hub reads HF_HOME="" as the current folder; we read it as unset.
CASES = {
    "nothing set": {},
    "HF_HOME with ~": {"HF_HOME": "~/my-hf"},
    "HF_HOME with $VAR": {"HF_HOME": "$NEMO_TEST_ROOT/hf-home"},
    "XDG_CACHE_HOME with ~": {"XDG_CACHE_HOME": "~/xdg-cache"},
    "XDG_CACHE_HOME absolute": {"XDG_CACHE_HOME": "{home}/abs-cache"},
    "HF_HOME wins over XDG": {"HF_HOME": "{home}/hf", "XDG_CACHE_HOME": "~/ignored"},
    "HF_HUB_CACHE with ~": {"HF_HUB_CACHE": "~/hub-only"},
}


def test_user_hf_home_is_huggingface_hubs(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), NEMO_TEST_ROOT=str(tmp_path))
    cases = {case: {k: v.format(home=home) for k, v in values.items()} for case, values in CASES.items()}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert list(found) == list(CASES)
    for case, paths in found.items():
        assert paths["ours"] == paths["hub"], (case, paths)
        assert paths["ours_hub"] == paths["hub_hub"], (case, paths)
        assert paths["hub"].startswith(str(tmp_path)), (case, paths)  # the case really moved it: no ~ left
