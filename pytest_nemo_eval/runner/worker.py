"""The hooks of an xdist worker (as pytest-xdist's remote.py): it deploys nothing and reports
nothing of its own. Its target comes from the controller through `workerinput`
(runner/plugin_state.py reads it); each benchmark's result travels to the controller as one JSON
document on its final test report (runner/items.ResultReporting), where runner/controller.py
collects it and announces it to the exporters."""

from __future__ import annotations

import pytest

from pytest_nemo_eval.runner.items import ResultReporting
from pytest_nemo_eval.runner.plugin_state import NemoState, state_of


class WorkerHooks(ResultReporting):
    def __init__(self, config: pytest.Config) -> None:
        self.state: NemoState = state_of(config)  # validates settings now, as the controller did
