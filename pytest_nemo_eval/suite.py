"""Suite YAML -> typed benchmarks.

A suite file is a list of benchmarks (harness + task + thresholds) plus
defaults. Users write these files by hand, so every validation error names the
file, the line and the field, and says what is allowed instead.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from pytest_nemo_eval.harness import eval_factory
from pytest_nemo_eval.harness.invocation import BUILTIN_IMAGE, ENV_NAME, Mount

Runtime = Literal["docker", "local", "auto"]
EndpointType = Literal["completions", "chat"]
InconclusivePolicy = Literal["fail", "warn", "pass"]
Prerequisite = Literal["gpu", "docker"]
Tier = Literal["critical", "supporting", "advisory"]
Correction = Literal["holm", "bh"]
DEFAULT_MAX_DROP = 0.015  # NeMo Evaluator's gate_policy default

DEFAULT_IMAGE_REGISTRY = eval_factory.IMAGE_REGISTRY


def _mount_shorthand(value: Any) -> Any:
    """`- /data/tasks` means the same path inside the container."""
    return {"host": value} if isinstance(value, str) else value


SuiteMount = Annotated[Mount, BeforeValidator(_mount_shorthand)]


def _check_env_names(names: list[str]) -> list[str]:
    for name in names:
        if not ENV_NAME.match(name):
            raise ValueError(
                f"{name!r} is not an environment variable NAME; `env` lists names only (e.g. HF_TOKEN), "
                "their values are read from the environment pytest runs in"
            )
    return names


def _check_params(params: dict[str, Any]) -> dict[str, Any]:
    if eval_factory.WRONG_API_KEY_OVERRIDE in params:
        raise ValueError(
            f"`{eval_factory.WRONG_API_KEY_OVERRIDE}` is not a NeMo Evaluator field (eval-factory harnesses "
            f"reject it). Write `{eval_factory.API_KEY_NAME_OVERRIDE}: <NAME of the env var holding the key>` "
            "(the value is never written in a suite), or use --nemo-api-key-env for the endpoint behind the proxy"
        )
    return params


class _Strict(BaseModel):
    """Unknown keys are typos: reject them instead of ignoring a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Threshold(_Strict):
    """Bounds for one metric: the score must be >= `min` and/or <= `max`."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _needs_a_bound(self) -> "Threshold":
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min}) is above `max` ({self.max})")
        return self

    def describe(self) -> str:
        """Human form used in messages, tables and JUnit: '>= 0.5', '<= 0.1', '[0.2, 0.8]'."""
        if self.min is not None and self.max is not None:
            return f"[{self.min:g}, {self.max:g}]"
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


class GatePolicy(_Strict):
    """How a benchmark is judged against `--nemo-baseline` (docs/concepts/gate-policy.md): the largest
    drop accepted (`max_drop`, or `max_relative_drop` x the baseline's score, except below
    `relative_guard_below` where a relative margin of a near-zero score would be near zero) and what a
    NO-GO does to the run (`tier`). Unset fields inherit the defaults' `gate`."""

    tier: Tier = "critical"
    max_drop: float = Field(default=DEFAULT_MAX_DROP, ge=0)
    max_relative_drop: float | None = Field(default=None, gt=0, lt=1)
    relative_guard_below: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _guard_needs_relative(self) -> "GatePolicy":
        if self.relative_guard_below is not None and self.max_relative_drop is None:
            raise ValueError("`relative_guard_below` only applies with `max_relative_drop`; set both or neither")
        return self

    def margin(self, baseline: float) -> float:
        """The drop accepted from a metric whose baseline score is `baseline`."""
        if self.max_relative_drop is None:
            return self.max_drop
        if self.relative_guard_below is not None and abs(baseline) < self.relative_guard_below:
            return self.max_drop
        return self.max_relative_drop * abs(baseline)

    def over(self, base: "GatePolicy") -> "GatePolicy":
        """This policy's explicitly set fields over `base`'s."""
        return base.model_copy(update=self.model_dump(exclude_unset=True))

    def describe(self) -> str:
        if self.max_relative_drop is None:
            margin = f"max drop {self.max_drop:g}"
        else:
            guard = f" (max drop {self.max_drop:g} below {self.relative_guard_below:g})" \
                if self.relative_guard_below is not None else ""
            margin = f"max relative drop {self.max_relative_drop:g}{guard}"
        return f"{self.tier}, {margin}"


class JudgeEndpoint(_Strict):
    """A judge model other than the one under test: its OpenAI-compatible base URL (`.../v1`) or chat
    completions URL, its model id, and the NAME of the env variable holding its API key."""

    url: str = Field(pattern=r"^https?://")
    model_id: str
    api_key_env: str | None = None

    @field_validator("api_key_env")
    @classmethod
    def _key_name(cls, name: str | None) -> str | None:
        return _check_env_names([name])[0] if name else name


# `deployment`: the model under test judges (through a proxy route of its own)
Judge = JudgeEndpoint | Literal["deployment"]


class _HarnessInputs(_Strict):
    """Checks of what a benchmark hands its harness beyond the task (`params`, `env`); the
    fields are declared by each subclass, in the order its error messages list them."""

    @field_validator("env", check_fields=False)
    @classmethod
    def _env_names(cls, names: list[str]) -> list[str]:
        return _check_env_names(names)

    @field_validator("params", check_fields=False)
    @classmethod
    def _no_api_key_value(cls, params: dict[str, Any]) -> dict[str, Any]:
        return _check_params(params)


class SuiteDefaults(_HarnessInputs):
    """Settings every benchmark inherits unless it sets its own."""

    runtime: Runtime = "auto"
    image_registry: str = DEFAULT_IMAGE_REGISTRY
    image_tag: str = "latest"
    endpoint_type: EndpointType = "completions"
    limit_samples: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=1800.0, gt=0)
    confidence: float | None = Field(default=None, gt=0, lt=1)
    inconclusive: InconclusivePolicy = "fail"
    parallelism: int | None = Field(default=None, gt=0)
    adapter: dict[str, Any] = {}
    params: dict[str, Any] = {}
    mounts: list[SuiteMount] = Field(default=[], description="extra read-only mounts into the harness container")
    env: list[str] = Field(default=[], description="NAMES of host environment variables passed to the harness")
    judge: Judge | None = Field(default=None, description="the judge model of judged benchmarks")
    max_request_errors: float = Field(default=0.0, ge=0, le=1, description=(
        "the share of the model's requests that may end in an error before the benchmark errors: harnesses "
        "score an error reply as a wrong answer, so by default any error makes the scores untrustworthy"))
    max_truncated_share: float = Field(default=0.0, ge=0, le=1, description=(
        "the share of the model's answers that may be cut off by the token cap inside their thinking before "
        "the benchmark errors: such an answer is empty, and scoring it says nothing about the model"))
    chat_template_kwargs: dict[str, Any] = Field(default={}, description=(
        "merged into every chat request's `chat_template_kwargs` (the request's own keys win), e.g. "
        "{enable_thinking: false} to switch a reasoning model's thinking off"))
    gate: GatePolicy = Field(default=GatePolicy(), description="the baseline gate's policy of every benchmark")
    early_stop: bool = Field(default=False, description=(
        "builtin-harness benchmarks with a threshold stop sampling once an anytime-valid confidence sequence "
        "settles the verdict (docs/concepts/gate-policy.md); other harnesses run every sample"))
    multiple_comparisons: Correction = Field(default="holm", description=(
        "how the run's NO-GO p-values are adjusted for testing many metrics: holm (family-wise error rate) "
        "or bh (Benjamini-Hochberg false discovery rate)"))


class Benchmark(_HarnessInputs):
    """One benchmark = one test item: run `harness.task`, then check `thresholds`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    harness: str
    task: str
    endpoint_type: EndpointType | None = None
    runtime: Runtime | None = None
    image: str | None = None
    params: dict[str, Any] = {}
    thresholds: dict[str, Threshold] = {}
    confidence: float | None = Field(default=None, gt=0, lt=1)
    inconclusive: InconclusivePolicy | None = None
    limit_samples: int | None = Field(default=None, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)
    parallelism: int | None = Field(default=None, gt=0)
    markers: list[str] = []
    requires: list[Prerequisite] = []
    adapter: dict[str, Any] = {}
    mounts: list[SuiteMount] = Field(default=[], description="extra read-only mounts into the harness container")
    env: list[str] = Field(default=[], description="NAMES of host environment variables passed to the harness")
    judge: Judge | None = Field(default=None, description="the judge model of a judged benchmark (else defaults')")
    max_request_errors: float | None = Field(default=None, ge=0, le=1)
    max_truncated_share: float | None = Field(default=None, ge=0, le=1)
    chat_template_kwargs: dict[str, Any] = Field(default={}, description="merged over the defaults' (keys win)")
    gate: GatePolicy | None = Field(default=None, description="the baseline gate's policy (fields over the defaults')")
    early_stop: bool | None = Field(default=None, description="stop once the threshold's verdict is settled")

    @model_validator(mode="after")
    def _early_stop_needs(self) -> "Benchmark":
        if self.early_stop and self.harness != "builtin":
            raise ValueError(f"`early_stop: true` needs the builtin harness, whose per-sample scores the plugin sees "
                             f"while it runs; harness {self.harness!r} runs every sample. Remove `early_stop`.")
        if self.early_stop and not self.thresholds:
            raise ValueError("`early_stop: true` stops when a threshold's verdict is settled; add `thresholds`")
        return self

    @field_validator("markers")
    @classmethod
    def _marker_names(cls, markers: list[str]) -> list[str]:
        for marker in markers:
            if not marker.isidentifier():
                raise ValueError(f"marker {marker!r} is not a Python identifier (use letters, digits, _)")
        return markers


class Suite(_Strict):
    """A suite file: optional name/description, defaults, benchmarks."""

    name: str | None = None
    description: str = ""
    seed: int = 1234
    requires: list[Prerequisite] = []
    defaults: SuiteDefaults = SuiteDefaults()
    benchmarks: list[Benchmark] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> "Suite":
        seen: set[str] = set()
        for benchmark in self.benchmarks:
            if benchmark.name in seen:
                raise ValueError(f"benchmark name {benchmark.name!r} is used twice; names must be unique")
            seen.add(benchmark.name)
        return self


def benchmark_id(suite: str, name: str) -> str:
    """`<suite>::<name>`: the one key a benchmark has in JUnit, baselines, JSON and exporters."""
    return f"{suite}::{name}"


class ResolvedBenchmark(BaseModel):
    """A benchmark with the suite defaults applied: what the plugin runs."""

    model_config = ConfigDict(frozen=True)

    suite_name: str
    suite_path: Path
    name: str
    harness: str
    task: str
    endpoint_type: EndpointType
    runtime: Runtime
    image: str | None
    params: dict[str, Any]
    thresholds: dict[str, Threshold]
    confidence: float | None
    inconclusive: InconclusivePolicy
    limit_samples: int | None
    timeout_s: float
    parallelism: int | None
    markers: list[str]
    requires: list[Prerequisite]
    adapter: dict[str, Any]
    mounts: list[Mount] = []
    env: list[str] = []
    judge: Judge | None = None
    max_request_errors: float = 0.0
    max_truncated_share: float = 0.0
    chat_template_kwargs: dict[str, Any] = {}
    gate: GatePolicy = GatePolicy()
    multiple_comparisons: Correction = "holm"
    early_stop: bool = False
    seed: int

    image_registry: str
    image_tag: str

    @property
    def id(self) -> str:
        return benchmark_id(self.suite_name, self.name)

    def image_for_docker(self) -> str:
        """Explicit `image`; else our harness image for `builtin`; else `<registry>/<harness>:<tag>`."""
        if self.image:
            return self.image
        if self.harness == "builtin":
            return BUILTIN_IMAGE
        return eval_factory.image_for(self.harness, registry=self.image_registry, tag=self.image_tag)


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names file, line and field."""


class LoadedSuite(BaseModel):
    """A validated suite with where it came from (for provenance and ids)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    sha256: str
    suite: Suite
    benchmark_lines: dict[str, int]

    @property
    def name(self) -> str:
        return self.suite.name or self.path.stem

    def resolved(self) -> list[ResolvedBenchmark]:
        """Every benchmark with defaults merged in (benchmark settings win)."""
        d = self.suite.defaults
        return [
            ResolvedBenchmark(
                suite_name=self.name,
                suite_path=self.path,
                name=b.name,
                harness=b.harness,
                task=b.task,
                endpoint_type=b.endpoint_type or d.endpoint_type,
                runtime=b.runtime or d.runtime,
                image=b.image,
                params={**d.params, **b.params, **_early_stop_params(b, d)},
                thresholds=b.thresholds,
                confidence=b.confidence if b.confidence is not None else d.confidence,
                inconclusive=b.inconclusive or d.inconclusive,
                limit_samples=b.limit_samples or d.limit_samples,
                timeout_s=b.timeout_s or d.timeout_s,
                parallelism=b.parallelism or d.parallelism,
                markers=b.markers,
                requires=sorted(set(self.suite.requires) | set(b.requires)),
                adapter={**d.adapter, **b.adapter},
                mounts=[self._absolute(m) for m in [*d.mounts, *b.mounts]],
                env=list(dict.fromkeys([*d.env, *b.env])),
                judge=b.judge if b.judge is not None else d.judge,
                max_request_errors=b.max_request_errors if b.max_request_errors is not None else d.max_request_errors,
                max_truncated_share=b.max_truncated_share if b.max_truncated_share is not None
                else d.max_truncated_share,
                chat_template_kwargs={**d.chat_template_kwargs, **b.chat_template_kwargs},
                gate=b.gate.over(d.gate) if b.gate is not None else d.gate,
                multiple_comparisons=d.multiple_comparisons,
                early_stop=bool(_early_stop_params(b, d)),
                seed=self.suite.seed,
                image_registry=d.image_registry,
                image_tag=d.image_tag,
            )
            for b in self.suite.benchmarks
        ]

    def _absolute(self, mount: Mount) -> Mount:
        """A relative host path is relative to the suite file, so a suite works from any directory."""
        host = Path(mount.host).expanduser()
        return mount.model_copy(update={"host": host if host.is_absolute() else (self.path.parent / host).resolve()})


def _early_stop_params(b: Benchmark, d: SuiteDefaults) -> dict[str, Any]:
    """The builtin harness's early-stop overrides (harness/builtin/early_stop.py) for the benchmark's first
    threshold, at the benchmark's confidence (0.95 without one); none when early stop is off or cannot apply."""
    wanted = b.early_stop if b.early_stop is not None else d.early_stop
    if not wanted or b.harness != "builtin" or not b.thresholds:
        return {}
    metric, threshold = next(iter(b.thresholds.items()))
    confidence = b.confidence if b.confidence is not None else (d.confidence or 0.95)
    params: dict[str, Any] = {"early_stop_metric": metric, "early_stop_alpha": round(1 - confidence, 12)}
    params.update({f"early_stop_{k}": v for k, v in (("min", threshold.min), ("max", threshold.max)) if v is not None})
    return params


def looks_like_suite(path: Path) -> bool:
    """True for a YAML mapping with a top-level `benchmarks:` key (cheap: no validation)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "benchmarks" in data


def load_suite(path: str | Path) -> LoadedSuite:
    """Read and validate a suite file; raise `SuiteError` naming file, line and field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SuiteError(f"Cannot read suite file {path}: {exc}. Pass an existing YAML file.") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SuiteError(f"Suite file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SuiteError(
            f"{path}: a suite file must be a mapping with a `benchmarks:` list at the top level; "
            "see suites/smoke.yaml for an example."
        )
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(_describe_errors(path, root, exc)) from None
    _check_adapter_configs(path, root, suite)
    lines = {
        b.name: _line_of(root, ("benchmarks", i)) or 1 for i, b in enumerate(suite.benchmarks)
    }
    return LoadedSuite(path=path, sha256=hashlib.sha256(raw).hexdigest(), suite=suite, benchmark_lines=lines)


def _check_adapter_configs(path: Path, root: yaml.Node, suite: Suite) -> None:
    """Validate `adapter:` blocks now, not when the proxy route is created mid-run."""
    from pytest_nemo_eval.adapters.config import AdapterConfig

    blocks: list[tuple[tuple[Any, ...], dict[str, Any]]] = [(("defaults", "adapter"), suite.defaults.adapter)]
    blocks += [(("benchmarks", i, "adapter"), {**suite.defaults.adapter, **b.adapter}) for i, b in enumerate(suite.benchmarks)]
    for loc, block in blocks:
        if not block:
            continue
        try:
            AdapterConfig.parse_user(block, source="adapter block")
        except ValueError as exc:
            line = _line_of(root, loc)
            raise SuiteError(f"{path}:{line}: field `{_dotted(loc)}`: {exc}") from None


def _describe_errors(path: Path, root: yaml.Node | None, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = _line_of(root, loc) or 1
        field = _dotted(loc) or "<top level>"
        if err["type"] == "extra_forbidden":
            owner = _model_at(loc[:-1])
            allowed = ", ".join(owner.model_fields) if owner else "see suites/smoke.yaml"
            problems.append(f"{path}:{line}: unknown field `{field}` (allowed here: {allowed})")
        else:
            problems.append(f"{path}:{line}: field `{field}`: {err['msg']}")
    return "Invalid suite file. " + "; ".join(problems) + ". Fix the field(s) above; suites/smoke.yaml shows every key."


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema model that owns a location (to list its allowed keys)."""
    children: dict[tuple[type[BaseModel], str], type[BaseModel]] = {
        (Suite, "defaults"): SuiteDefaults,
        (Suite, "benchmarks"): Benchmark,
        (Benchmark, "thresholds"): Threshold,
        (Benchmark, "mounts"): Mount,
        (SuiteDefaults, "mounts"): Mount,
        (SuiteDefaults, "gate"): GatePolicy,
        (Benchmark, "gate"): GatePolicy,
    }
    model: type[BaseModel] | None = Suite
    parts = [p for p in loc if not isinstance(p, int)]
    index = 0
    while index < len(parts) and model is not None:
        child = children.get((model, parts[index]))
        index += 2 if child is Threshold else 1  # skip the metric name key
        model = child
    return model


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node on `loc` (falls back to the nearest parent)."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    best = key.start_mark.line + 1
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            best = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return best
