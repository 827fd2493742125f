"""serving/engine_source.py: the engine a backend serves, and the benchmarks' private stand-in hook."""

from __future__ import annotations

import pytest

from pytest_nemo_eval.serving.engine_source import BENCH_ENGINE_ENV, open_engine
from pytest_nemo_eval.serving.settings import ServeSettings


def test_the_private_hook_builds_the_engine_from_the_named_file(tmp_path, monkeypatch):
    hook = tmp_path / "engine.py"
    hook.write_text("def create(settings):\n    return ('built for', settings.max_batch_size)\n")
    monkeypatch.setenv(BENCH_ENGINE_ENV, str(hook))
    assert open_engine(ServeSettings(checkpoint=tmp_path, max_batch_size=7)) == ("built for", 7)


def test_a_hook_that_names_no_file_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(BENCH_ENGINE_ENV, str(tmp_path / "missing.py"))
    with pytest.raises(ValueError, match=f"{BENCH_ENGINE_ENV}=.*missing.py names no file.*unset it"):
        open_engine(ServeSettings(checkpoint=tmp_path))
