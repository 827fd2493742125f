"""The plugin's settings, declared once: option `--nemo-<name>`, ini key
`nemo_<name>`, environment variable `NEMO_EVAL_<NAME>` (precedence in that order).

Kept free of heavy imports: pytest loads it in every run to register options.
"""

from __future__ import annotations

import pytest

# (name, help, choices) — option `--nemo-<name>`, ini `nemo_<name>`, env `NEMO_EVAL_<NAME>`
SETTINGS: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("checkpoint", "NeMo 2.0 checkpoint directory to deploy, or `demo` for the bundled demo model.", None),
    ("endpoint", "Evaluate this running OpenAI-compatible endpoint (base URL) instead of deploying.", None),
    ("api-key-env", "Name of the environment variable holding the endpoint's API key (never the key itself).", None),
    ("model-id", "Model id to send to --nemo-endpoint (default: the first id of its /v1/models).", None),
    ("runtime", "Where harnesses run; overrides the suite's setting.", ("docker", "local", "auto")),
    ("limit-samples", "Evaluate at most this many samples per benchmark (quick runs).", None),
    ("output-dir", "Directory for harness outputs, logs, the proxy cache and deployment records.", None),
    ("cache", "Proxy response cache: reuse cached answers, refresh them, or off.", ("reuse", "refresh", "off")),
    ("cache-dir", "Directory of the response cache and of finished benchmarks' results, kept across runs (CI may "
     "restore it with its own cache step); keyed by the checkpoint's fingerprint. Default: <output-dir>/cache.",
     None),
    ("baseline", "JUnit XML of an earlier run: fail benchmarks whose metrics regressed versus it.", None),
    ("baseline-tolerance", "Deprecated: use --nemo-gate-max-drop (this sets it, with a warning).", None),
    ("gate-max-drop", "The baseline gate's margin for every benchmark: the absolute drop accepted (overrides the "
     "suite's gate: max_drop and max_relative_drop; docs/concepts/gate-policy.md).", None),
    ("max-batch-size", "Deployment: most requests decoding together (in-flight batch slots).", None),
    ("tensor-parallel", "Deployment: tensor-parallel size.", None),
    ("pipeline-parallel", "Deployment: pipeline-parallel size.", None),
    ("serving-backend", "Deployment: what runs the model: pytriton (one copy) or ray (Ray Serve replicas).",
     ("pytriton", "ray")),
    ("replicas", "Deployment (ray): copies of the model behind the one endpoint; harness parallelism follows.", None),
    ("replica-cpus", "Deployment (ray, on CPU): CPUs Ray reserves for each replica.", None),
    ("ray-address", "Deployment (ray): an existing Ray cluster (auto, HOST:PORT, ray://HOST:PORT); default: a "
     "private local head, shut down at the end.", None),
    ("tool-parser", "Deployment: the tool-call output format to parse (hermes, llama3_json, mistral, pythonic, as "
     "vLLM's --tool-call-parser; none: off); default: chosen from the checkpoint's chat template.", None),
    ("reasoning-parser", "Deployment: how replies' thought is split from their answer (deepseek_r1, qwen3, as vLLM's "
     "--reasoning-parser; none: off); default: chosen from the checkpoint's chat template.", None),
    ("startup-timeout", "Deployment: seconds to wait for the server to become ready.", None),
    ("progress-interval", "Seconds between progress lines for a running benchmark (0 = off).", None),
    ("shard", "Run shard I of N (I/N, from 1) of the collected benchmarks, each shard on its own CI job and "
     "deployment; merge the shards' JUnit files with `nemo-eval-report merge`.", None),
    ("shard-durations", "JUnit XML or results JSON of an earlier run whose benchmark durations balance "
     "--nemo-shard (default: every benchmark weighs the same).", None),
    ("sample-seed", "With --nemo-limit-samples: take a random subset drawn with this seed where the harness "
     "allows it (builtin harness), instead of the first N; JUnit nemo.sampling says which was used.", None),
    ("mlflow-uri", "Export the run to this MLflow tracking server (default: $MLFLOW_TRACKING_URI when set).", None),
    ("mlflow-experiment", "MLflow experiment of the exported run (default: pytest-nemo-eval).", None),
]
# On/off settings: a bare option `--nemo-<name>`; env and ini take 1/true/yes/on or 0/false/no/off.
FLAGS: list[tuple[str, str]] = [
    ("allow-unsandboxed-code", "Run model-written code (code benchmarks of the builtin harness) without a "
     "sandbox where bubblewrap cannot make one (like bigcode's --allow_code_execution); without it such "
     "benchmarks are skipped."),
    ("gate-lenient", "A supporting benchmark's NO-GO versus the baseline warns instead of failing (critical "
     "ones still fail; docs/concepts/gate-policy.md)."),
    ("rerun", "Run every benchmark afresh instead of reusing a finished result of the same inputs from "
     "--nemo-cache-dir (requests still go through the response cache)."),
]


def addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nemo-eval", "LLM benchmarks as tests (pytest-nemo-eval)")
    for name, help_text, choices in SETTINGS:
        env = env_name(name)
        group.addoption(
            f"--nemo-{name}",
            dest=dest_name(name),
            default=None,
            choices=choices,
            help=f"{help_text} [env {env}, ini nemo_{dest_name(name)}]",
        )
        parser.addini(f"nemo_{dest_name(name)}", help_text, default=None)
    for name, help_text in FLAGS:
        group.addoption(
            f"--nemo-{name}", dest=dest_name(name), action="store_true", default=None,
            help=f"{help_text} [env {env_name(name)}, ini nemo_{dest_name(name)}]",
        )
        parser.addini(f"nemo_{dest_name(name)}", help_text, default=None)
    parser.addini(
        "nemo_suite_files",
        "Glob patterns (relative to rootdir) of suite YAML files to collect besides those named on the command line.",
        type="linelist",
        default=[],
    )


def dest_name(name: str) -> str:
    return name.replace("-", "_")


# settings whose variable is not the mechanical one: NEMO_EVAL_CACHE_DIR already names the plugin's machine
# cache (demo checkpoints, harness venvs: checkpoint/demo.py), which is not the run's response cache
ENV_NAMES = {"cache-dir": "NEMO_EVAL_RESPONSE_CACHE_DIR"}


def env_name(name: str) -> str:
    return ENV_NAMES.get(name) or "NEMO_EVAL_" + dest_name(name).upper()


