"""The hooks of an xdist worker (as pytest-xdist's remote.py): it deploys nothing and reports
nothing of its own. Its target comes from the controller through `workerinput`
(runner/plugin_state.py reads it); its benchmark records travel to the controller in the test
reports' user_properties, where runner/controller.py collects them."""

from __future__ import annotations

import pytest

from pytest_nemo_eval.runner.plugin_state import NemoState, state_of


class WorkerHooks:
    def __init__(self, config: pytest.Config) -> None:
        self.state: NemoState = state_of(config)  # validates settings now, as the controller did
