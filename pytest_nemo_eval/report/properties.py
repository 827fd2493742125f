"""JUnit properties <-> `BenchmarkResult`: the ONE module that writes and reads them.

Test case properties (one test case = one benchmark):

    nemo.benchmark             <suite>::<benchmark>   (the key reports are joined on)
    nemo.status                passed | failed | error | skipped: `BenchmarkResult.status`. A harness error
                               is reported in pytest's call phase, so its JUnit element is a <failure>;
                               this property still says `error` (`failed` = missed thresholds/regression)
    nemo.harness, nemo.runtime, nemo.runtime_reason, nemo.image, nemo.image_digest,
    nemo.samples, nemo.sampling (which ones: all | first-n n=N | seeded-random n=N seed=S),
    nemo.duration_s, nemo.suite_sha256, nemo.seed, nemo.outcome, nemo.error,
    nemo.samples_file, nemo.results_file, nemo.proxy_log, nemo.multiple_comparisons (holm | bh)
    nemo.chat_template_kwargs  the suite's `chat_template_kwargs` of the benchmark (JSON, keys sorted), when set
    nemo.code_isolation        the boundary a code benchmark's model-written code ran behind:
                               container | bubblewrap | unsandboxed, or none (harness/code_isolation.py)
    nemo.proxy.<counter>       requests, cache_hits, errors, retries, latency_p50_ms, tokens ...,
                               tool_call_replies, tool_calls, tool_call_errors, reasoning_tokens,
                               generations, truncated_reasoning, truncated_reasoning_share,
                               finish_reason_relabeled, empty_generations, reasoning_replayed
                               (adapters/stats.py)
    nemo.judge.model, nemo.judge.url, nemo.judge.<counter>   a judged benchmark's judge route (runner/judge.py)
    nemo.metric.<metric>.<field>   field = value | stderr | threshold | direction | verdict | ci | ci_method
                               (the interval used: Wilson, normal, or betting CS for an early-stopped benchmark)
    nemo.baseline.<metric>.<field> the comparison with --nemo-baseline (written, not read back): method
                               (mcnemar | permutation | unpaired), baseline, regressed, allowed, note; when
                               paired also n, p_value (McNemar / permutation, evidence), drop, mde, worse,
                               better (counts) and worse_items, better_items (JSON lists of the flipped item
                               ids, the first MAX_FLIPPED_IDS); the gate policy's decision (gate_policy.py):
                               verdict (GO | NO-GO | INCONCLUSIVE), tier, margin, drop, drop_ci ([low, high]),
                               interval (which one), p_margin (raw p of "drop <= margin"), p_adjusted and
                               correction (when the comparison can fail the run)
    nemo.early_stop            a benchmark that watched its threshold (suite `early_stop: true`): JSON of metric,
                               samples_used, samples_planned, reason (pass | fail | exhausted), ci_low, ci_high
    nemo.gate                  the benchmark's gate policy (JSON: tier, max_drop, max_relative_drop,
                               relative_guard_below), read back so `nemo-eval-report` judges by it

Test suite properties (provenance): nemo.checkpoint, nemo.checkpoint_format (nemo2 | megatron-bridge),
nemo.checkpoint_iteration (Megatron-Bridge), nemo.checkpoint_sha256 (of the files served),
nemo.endpoint, nemo.model_id, nemo.version.*, nemo.suite.<suite>.sha256,
nemo.seed, nemo.deployments. Files written before `nemo.status` existed: the JUnit element's
(passed/failure/error/skipped) is the status.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, get_args

from pytest_nemo_eval.results import BenchmarkResult, MetricResult, Status, direction_of
from pytest_nemo_eval.suite import Threshold

METRIC_PREFIX = "nemo.metric."
METRIC_FIELDS = ("value", "stderr", "count", "threshold", "direction", "verdict", "ci", "ci_method")
PROXY_PREFIX = "nemo.proxy."
CHAT_TEMPLATE_KWARGS = "nemo.chat_template_kwargs"
JUDGE_PREFIX = "nemo.judge."
BASELINE_PREFIX = "nemo.baseline."
GATE = "nemo.gate"
EARLY_STOP = "nemo.early_stop"
MAX_FLIPPED_IDS = 100
PROXY_FIELDS = (
    "requests",
    "errors",
    "cache_hits",
    "retries",
    "upstream_calls",  # requests that reached the model (the rest: cache hits, refusals)
    "latency_p50_ms",
    "latency_p99_ms",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "tool_call_replies",
    "tool_calls",
    "tool_call_errors",
    "ignored_field_requests",
    "generations",
    "truncated_reasoning",
    "truncated_reasoning_share",
    "finish_reason_relabeled",
    "empty_generations",
    "reasoning_replayed",
)
# BenchmarkResult fields written as `nemo.<field>` (in this order), and read back by name.
FACT_FIELDS = (
    "suite_sha256",
    "seed",
    "harness",
    "runtime",
    "runtime_reason",
    "image",
    "code_isolation",
    "duration_s",
    "samples",
    "sampling",
    "image_digest",
    "samples_file",
    "results_file",
    "proxy_log",
    "reused_from",
    "multiple_comparisons",
)
STATUSES = get_args(Status)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf"


def _num(value: float) -> str:
    return repr(float(value))


def _fact(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def to_properties(result: BenchmarkResult) -> list[tuple[str, str]]:
    """The test case properties of `result` (only the fields that are set)."""
    out = [("nemo.benchmark", result.benchmark), ("nemo.status", result.status)]
    out += [(f"nemo.{name}", _fact(getattr(result, name))) for name in FACT_FIELDS
            if getattr(result, name) not in (None, "")]
    if result.chat_template_kwargs:
        out.append((CHAT_TEMPLATE_KWARGS, json.dumps(result.chat_template_kwargs, sort_keys=True)))
    out += [(PROXY_PREFIX + key, _fact_proxy(result.proxy[key])) for key in PROXY_FIELDS if key in result.proxy]
    out += [(JUDGE_PREFIX + key, value) for key, value in result.judge.items()]
    for name, metric in result.metrics.items():
        base = f"{METRIC_PREFIX}{name}."
        out.append((base + "value", _num(metric.value)))
        if metric.stderr is not None:
            out.append((base + "stderr", _num(metric.stderr)))
        if metric.count is not None:
            out.append((base + "count", str(metric.count)))
        if metric.threshold is not None:
            out.append((base + "threshold", describe_threshold(metric.threshold)))
        out.append((base + "direction", metric.direction))
        if metric.verdict is not None:
            out.append((base + "verdict", metric.verdict))
        if metric.ci_low is not None and metric.ci_high is not None:
            out.append((base + "ci", f"[{metric.ci_low:.6g}, {metric.ci_high:.6g}]"))
        if metric.ci_method is not None:
            out.append((base + "ci_method", metric.ci_method))
    for c in result.baseline:
        base = f"{BASELINE_PREFIX}{c.metric}."
        out += [(base + "method", c.method), (base + "baseline", _num(c.baseline)),
                (base + "regressed", "true" if c.regressed else "false")]
        if c.paired is None:
            out.append((base + "allowed", _num(c.allowed)))
        else:
            t = c.paired
            out += [(base + "n", str(t.n)), (base + "p_value", _num(t.p_value)), (base + "drop", _num(t.drop)),
                    (base + "mde", _num(t.mde)), (base + "worse", str(len(t.worse))),
                    (base + "better", str(len(t.better))),
                    (base + "worse_items", json.dumps(t.worse[:MAX_FLIPPED_IDS])),
                    (base + "better_items", json.dumps(t.better[:MAX_FLIPPED_IDS]))]
        if c.decision is not None:
            d = c.decision
            out += [(base + "verdict", d.verdict), (base + "tier", d.tier), (base + "margin", _num(d.margin))]
            out += [(base + "drop", _num(d.drop))] if c.paired is None else []  # paired: written above
            out += [(base + "drop_ci", f"[{d.ci_low:.6g}, {d.ci_high:.6g}]"),
                    (base + "interval", d.interval), (base + "p_margin", _num(d.p_value))]
            if d.p_adjusted is not None:
                out += [(base + "p_adjusted", _num(d.p_adjusted)), (base + "correction", d.correction or "")]
        if c.note:
            out.append((base + "note", c.note[:500]))
    if result.gate is not None:
        out.append((GATE, result.gate.model_dump_json()))
    if result.early_stop is not None:
        out.append((EARLY_STOP, json.dumps(result.early_stop, sort_keys=True)))
    if result.outcome is not None:
        out.append(("nemo.outcome", result.outcome))
    if result.status == "error" and result.message:
        out.append(("nemo.error", result.message.splitlines()[0][:500]))
    return out


def describe_threshold(threshold: Threshold) -> str:
    """`Threshold.describe`'s form with every digit kept (its `:g` rounds to 6), so it reads back exactly."""

    def exact(x: float) -> str:
        text = repr(float(x))
        return text[:-2] if text.endswith(".0") else text

    if threshold.min is not None and threshold.max is not None:
        return f"[{exact(threshold.min)}, {exact(threshold.max)}]"
    return f">= {exact(threshold.min)}" if threshold.min is not None else f"<= {exact(threshold.max)}"  # type: ignore[arg-type]


def _fact_proxy(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_threshold(text: str) -> Threshold | None:
    """The inverse of `Threshold.describe`: '>= 0.5', '<= 0.1', '[0.2, 0.8]'."""
    text = text.strip()
    if match := re.fullmatch(rf">=\s*({_NUMBER})", text):
        return Threshold(min=float(match[1]))
    if match := re.fullmatch(rf"<=\s*({_NUMBER})", text):
        return Threshold(max=float(match[1]))
    if match := re.fullmatch(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]", text):
        return Threshold(min=float(match[1]), max=float(match[2]))
    return None


def _metric(fields: dict[str, str]) -> MetricResult:
    threshold = parse_threshold(fields["threshold"]) if fields.get("threshold") else None
    ci_low = ci_high = None
    if match := re.fullmatch(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]", fields.get("ci", "").strip()):
        ci_low, ci_high = float(match[1]), float(match[2])
    direction = fields.get("direction")
    return MetricResult(
        value=float(fields["value"]),
        stderr=float(fields["stderr"]) if fields.get("stderr") else None,
        count=int(fields["count"]) if fields.get("count") else None,
        ci_low=ci_low,
        ci_high=ci_high,
        threshold=threshold,
        # files written before `direction` existed: the typed threshold decides
        direction=direction if direction in ("higher", "lower") else direction_of(threshold),  # type: ignore[arg-type]
        verdict=fields.get("verdict") or None,  # type: ignore[arg-type]
        ci_method=fields.get("ci_method") or None,
    )


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def from_properties(
    pairs: Iterable[tuple[str, Any]], *, status: Status = "passed", message: str | None = None
) -> BenchmarkResult | None:
    """Rebuild a `BenchmarkResult`; None when the pairs are not a benchmark's. `status` (the JUnit element's)
    counts only when the pairs carry no `nemo.status`."""
    facts: dict[str, str] = {}
    proxy: dict[str, float] = {}
    judge: dict[str, str] = {}
    metric_fields: dict[str, dict[str, str]] = {}
    for raw_name, raw_value in pairs:
        name, value = str(raw_name), str(raw_value)
        if name.startswith(METRIC_PREFIX):
            metric, _, field = name[len(METRIC_PREFIX):].rpartition(".")
            if field in METRIC_FIELDS and metric:
                metric_fields.setdefault(metric, {})[field] = value
        elif name.startswith(JUDGE_PREFIX):
            judge[name[len(JUDGE_PREFIX):]] = value
        elif name.startswith(PROXY_PREFIX):
            try:
                proxy[name[len(PROXY_PREFIX):]] = float(value)
            except ValueError:
                continue
        elif name.startswith("nemo."):
            facts[name[len("nemo."):]] = value
    if "benchmark" not in facts:
        return None
    known = {name: facts[name] for name in FACT_FIELDS if facts.get(name)}
    if "seed" in known and not known["seed"].lstrip("-").isdigit():
        known.pop("seed")
    error = facts.get("error")
    return BenchmarkResult.model_validate({
        **known,
        "chat_template_kwargs": _json_object(facts.get("chat_template_kwargs")),
        "gate": _json_object(facts.get("gate")) or None,
        "early_stop": _json_object(facts.get("early_stop")) or None,
        "benchmark": facts["benchmark"],
        "status": facts["status"] if facts.get("status") in STATUSES else status,
        "outcome": facts.get("outcome") or None,
        "message": message or error,
        "proxy": proxy,
        "judge": judge,
        "metrics": {metric: _metric(fields) for metric, fields in metric_fields.items() if fields.get("value")},
    })
