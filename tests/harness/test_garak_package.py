"""Real garak (nemo-evaluator 0.2.8 + nvidia-eval-factory-garak 26.3 = garak 0.14.0, pinned venv of its own,
torch pinned to the project's CPU wheel; not in CI, see scripts/test_heavy_harnesses.sh) through the plugin, offline: probe `test.Test` against the scripted
echo upstream, twice at once under `-n 2`. garak writes `garak_config.yaml` into its working directory, so
before each harness had its own run directory the two runs overwrote each other's config; and it copies its
plugin cache into $XDG_CACHE_HOME at start-up, so with one shared cache one run read the other's half-copied
file and wrote no report (CI, stop 22)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.adapters.scripted_upstream import ScriptedUpstream
from tests.plugin.conftest import run_inner, suite_file  # noqa: F401 - fixtures of the plugin tests
from tests.plugin.inner_run import junit_cases

from .conftest import prebuilt_venv_bin


@pytest.fixture
def garak_bin() -> Path:
    """Built by scripts/test_heavy_harnesses.sh (not in CI: torch inside)."""
    return prebuilt_venv_bin("garak")


def test_garak_test_probe_twice_under_xdist(run_inner, suite_file, pytester, monkeypatch, garak_bin):  # noqa: F811
    monkeypatch.setenv("PATH", f"{garak_bin}{os.pathsep}{os.environ['PATH']}")
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("GARAK_TEST_KEY", "unused")  # garak refuses to start without a key, even for an open endpoint
    entry = """\
              - name: {name}
                harness: garak
                task: garak
                endpoint_type: chat
                runtime: local
                params: {{config.params.extra.probes: test.Test, config.params.parallelism: 1,
                          config.params.extra.seed: {seed}, target.api_endpoint.api_key_name: GARAK_TEST_KEY}}
                thresholds: {{pass_rate: {{min: 0.0}}}}
"""
    with ScriptedUpstream() as upstream:
        suite_file("garak", "benchmarks:\n" + entry.format(name="garak_a", seed=1) + entry.format(name="garak_b", seed=2))
        result = run_inner("garak.yaml", f"--nemo-endpoint={upstream.url}", "-n", "2", subprocess=True, timeout=900)
    cases = junit_cases(pytester.path / "junit.xml")
    for name, seed in (("garak_a", 1), ("garak_b", 2)):
        status, props = cases[name]
        run_dir = next((pytester.path / "nemo-out" / "runs").glob(f"*{name}"))
        assert status == "passed", result.stdout.str()[-3000:] + (run_dir / "harness.log").read_text()[-3000:]
        assert f"seed: {seed}" in (run_dir / "garak_config.yaml").read_text()  # its own config, in its own dir
        assert (run_dir / "xdg-cache" / "garak" / "resources" / "plugin_cache.json").is_file()  # its own plugin cache
        assert int(props["nemo.proxy.requests"]) > 0
        assert float(props["nemo.metric.pass_rate.value"]) == 1.0  # test.Test's detector is always.Pass
    assert not (pytester.path / "garak_config.yaml").exists()
    assert not (pytester.path / ".cache" / "garak").exists()  # HOME is the inner run's; CI failed on sharing it
