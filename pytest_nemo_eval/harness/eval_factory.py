"""What we know about NeMo Evaluator and eval-factory harnesses, in one place.

Read from nemo-evaluator 0.2.8's source and the eval-factory wheels' own
`core_evals/<pkg>/framework.yml` (the `framework.name` there is what
`--eval_type <framework>.<task>` must say), and from the image names on
nvcr.io/nvidia/eval-factory. A harness missing from `KNOWN_HARNESSES` still
runs: its suite name is used for the image and the eval_type alike.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# The CLI every eval-factory package installs (`eval-factory` is its older alias).
EVALUATOR_COMMANDS = ("nemo-evaluator", "eval-factory")
# nemo-evaluator (adapters/server.py) starts a local adapter server for its interceptors.
# Without ADAPTER_PORT it probes 3825, 3826, ... with bind-then-close and binds later,
# so two concurrent runs pick the same port and one silently uses the other's adapter.
# With ADAPTER_PORT it uses exactly that port, or exits when the port is taken.
ADAPTER_PORT_ENV = "ADAPTER_PORT"
# nemo-evaluator/telemetry.py: 0 = off, 1 = minimal, 2 = full (its default).
TELEMETRY_LEVEL_ENV = "NEMO_EVALUATOR_TELEMETRY_LEVEL"
TELEMETRY_OFF = "0"
# nemo-evaluator's ApiEndpoint field holding the NAME of the env var with the API key
# (the model forbids unknown fields, so `api_key` is rejected by the harness).
API_KEY_NAME_OVERRIDE = "target.api_endpoint.api_key_name"
WRONG_API_KEY_OVERRIDE = "target.api_endpoint.api_key"
IMAGE_REGISTRY = "nvcr.io/nvidia/eval-factory"


class EvalFactoryHarness(BaseModel):
    """One eval-factory harness: its image name, framework name and PyPI package."""

    model_config = ConfigDict(frozen=True)
    image: str
    framework: str
    package: str


KNOWN_HARNESSES: dict[str, EvalFactoryHarness] = {
    h.image: h
    for h in (
        EvalFactoryHarness(image="lm-evaluation-harness", framework="lm-evaluation-harness", package="nvidia-lm-eval"),
        EvalFactoryHarness(image="simple-evals", framework="simple_evals", package="nvidia-simple-evals"),
        EvalFactoryHarness(image="bigcode-evaluation-harness", framework="bigcode-evaluation-harness",
                           package="nvidia-bigcode-eval"),
    )
}


def known_harness(name: str) -> EvalFactoryHarness | None:
    """The harness a suite names, by image name or framework name (`simple-evals` or `simple_evals`)."""
    for harness in KNOWN_HARNESSES.values():
        if name in (harness.image, harness.framework):
            return harness
    return None


def framework_name(harness: str) -> str:
    """The `<framework>` of `--eval_type <framework>.<task>` for a suite's harness name."""
    known = known_harness(harness)
    return known.framework if known else harness


def image_name(harness: str) -> str:
    """The repository name under the eval-factory registry for a suite's harness name."""
    known = known_harness(harness)
    return known.image if known else harness


def install_hint(harness: str) -> str:
    """How to get a harness's `nemo-evaluator` locally: the real PyPI package name."""
    known = known_harness(harness)
    if known:
        return f"`pip install {known.package}` (eval-factory's package for {harness})"
    names = ", ".join(f"{h.package} for {h.image}" for h in KNOWN_HARNESSES.values())
    return f"the harness's eval-factory package from PyPI (e.g. {names})"
