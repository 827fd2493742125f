"""Harness runs: Docker and local runtimes, results.yml parsing, the builtin offline harness.

Public API (the plugin uses only these): `HarnessInvocation`, `Mount`, `run_harness`,
`HarnessRun`, `EvalResults`, `load_results` and the errors. Importable without
torch or megatron-core, so the harness image stays small. See README.md here.
"""

from .errors import HarnessError, HarnessFailed, HarnessTimeout, ResultsError, RuntimeUnavailable, UnknownTask
from .results import EvalResults, load_results
from .runtime import HarnessInvocation, HarnessRun, Mount, run_harness

__all__ = [
    "EvalResults", "HarnessError", "HarnessFailed", "HarnessInvocation", "HarnessRun", "HarnessTimeout", "Mount",
    "ResultsError", "RuntimeUnavailable", "UnknownTask", "load_results", "run_harness",
]
