"""The HTML report: one self-contained file (no CDN, no external asset: a CI artifact that opens
offline) rendered from a `RunResult`.

Shows the provenance; every benchmark and metric with value, interval, threshold, verdict and
baseline delta; a plot of each score with its interval against its threshold and the baseline
(matplotlib, inlined as SVG); per benchmark the failed samples, the items that flipped versus
the baseline (prompt, expected, both responses), and example request/response pairs from the
proxy's log with a copyable curl command (no API key: the command names the variable).

Written after every run next to the JUnit file (`gate.xml` -> `gate.html`, HtmlReportExporter),
and by `nemo-eval-report gate.xml --html report.html`.
"""

from __future__ import annotations

import io
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from pytest_nemo_eval.gate import ScoreValue, interval
from pytest_nemo_eval.results import BenchmarkResult, MetricResult, RunResult
from pytest_nemo_eval.samples import SampleRecord, SamplesError, read_samples

MAX_SAMPLES_SHOWN = 20
MAX_EXAMPLES = 3


class Example(BaseModel):
    """One logged request to the proxy (as sent upstream) and, when found, its response."""

    curl: str
    request: str
    response: str | None = None


class SampleView(BaseModel):
    item_id: str
    prompt: str
    expected: str
    response: str
    baseline_response: str | None = None
    scores: str = ""


def _interval(metric: MetricResult) -> tuple[float, float] | None:
    """The gate's interval, else the 95% one the gate would have drawn (gate.interval)."""
    if metric.ci_low is not None and metric.ci_high is not None:
        return metric.ci_low, metric.ci_high
    if metric.stderr is not None:
        low, high, _ = interval(ScoreValue(value=metric.value, stderr=metric.stderr, count=metric.count), 0.95)
        return low, high
    return None


def score_plot_svg(run: RunResult) -> str:
    """Each score with its 95% interval (dot and bar), its threshold bounds (red ticks) and the
    baseline (hollow diamond), one row per benchmark metric, as inline SVG text."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    rows = [(r, name, m) for r in run.benchmarks for name, m in r.metrics.items()]
    if not rows:
        return ""
    with matplotlib.rc_context({"svg.hashsalt": "nemo-eval", "svg.fonttype": "none", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
        try:
            for y, (result, name, metric) in enumerate(rows):
                colour = {"pass": "#2e7d32", "fail": "#c62828", "inconclusive": "#ef6c00"}.get(metric.verdict or "", "#455a64")
                interval = _interval(metric)
                if interval is not None:
                    ax.plot(interval, [y, y], color=colour, linewidth=2.5, solid_capstyle="butt",
                            gid=f"interval-{result.benchmark}-{name}")  # <g id=...> in the SVG: tests read it
                ax.plot([metric.value], [y], "o", color=colour, markersize=6)
                for bound in (metric.threshold.min, metric.threshold.max) if metric.threshold else ():
                    if bound is not None:
                        ax.plot([bound], [y], marker="|", color="#c62828", markersize=16, markeredgewidth=2)
                before = next((c.baseline for c in result.baseline if c.metric == name), None)
                if before is not None:
                    ax.plot([before], [y], "D", markerfacecolor="none", markeredgecolor="#1565c0", markersize=7)
            ax.set_yticks(range(len(rows)), [f"{r.benchmark} · {name}" for r, name, _ in rows])
            ax.invert_yaxis()
            ax.grid(axis="x", color="#e0e0e0")
            ax.set_xlabel("score (dot), 95% interval (bar), threshold (red tick), baseline (blue diamond)")
            fig.tight_layout()
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg")
        finally:
            plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def _samples(path: str | None) -> dict[str, SampleRecord]:
    if not path:
        return {}
    try:
        return read_samples(path)
    except SamplesError:
        return {}


def _view(record: SampleRecord, baseline: SampleRecord | None = None) -> SampleView:
    return SampleView(
        item_id=record.item_id, prompt=record.prompt, expected=_text(record.expected), response=record.response,
        baseline_response=baseline.response if baseline is not None else None,
        scores=", ".join(f"{k}={v:g}" for k, v in record.scores.items()),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def failed_samples(result: BenchmarkResult) -> list[SampleView]:
    """Samples that scored below 1 on a 0/1 metric the benchmark gates (or any metric when none is gated)."""
    gated = [name.split(".", 1)[0] for name, m in result.metrics.items() if m.threshold is not None]
    out = []
    for record in _samples(result.samples_file).values():
        scores = [record.scores[n] for n in (gated or list(record.scores)) if n in record.scores]
        if any(s in (0.0, 1.0) and s < 1.0 for s in scores):
            out.append(_view(record))
    return out


def flipped_samples(result: BenchmarkResult) -> list[tuple[str, str, list[SampleView]]]:
    """Per paired comparison: (metric, 'worse'|'better', the flipped items with both responses)."""
    now = _samples(result.samples_file)
    out = []
    for comparison in result.baseline:
        if comparison.paired is None:
            continue
        before = _samples(comparison.baseline_samples)
        for way, ids in (("worse", comparison.paired.worse), ("better", comparison.paired.better)):
            views = [_view(now[i], before.get(i)) for i in ids[:MAX_SAMPLES_SHOWN] if i in now]
            if ids:
                out.append((comparison.metric, f"{way} ({len(ids)})", views))
    return out


def _read_log(path: Path) -> list[dict[str, Any]]:
    entries = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


def _response_text(body: Any) -> str | None:
    try:
        choice = body["choices"][0]
        return str(choice["text"] if "text" in choice else choice["message"]["content"])
    except (KeyError, IndexError, TypeError):
        return None


def _prompt(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return str(messages[-1].get("content"))
    return None


def examples(result: BenchmarkResult, endpoint: str | None, api_key_env: str | None) -> list[Example]:
    """The first logged requests (as the proxy sent them upstream), each as a curl command against
    the model endpoint, with the response the harness got for that prompt (matched through the
    per-sample file). A deployed checkpoint's endpoint is gone after the run: `$NEMO_EVAL_ENDPOINT`."""
    if not result.proxy_log:
        return []
    folder = Path(result.proxy_log)
    responses = [e for e in _read_log(folder / "responses.jsonl") if e.get("status") == 200]
    samples_by_prompt = {r.prompt: r for r in _samples(result.samples_file).values()}
    out = []
    for entry in _read_log(folder / "requests.jsonl")[:MAX_EXAMPLES]:
        body = entry.get("body")
        path = str(entry.get("path", "/v1/completions"))
        url = shlex.quote(endpoint.rstrip("/") + path) if endpoint else f'"${{NEMO_EVAL_ENDPOINT}}{path}"'
        words = f"curl -s {url} -H 'Content-Type: application/json'"
        if api_key_env:  # the variable's NAME: the key itself never enters the report
            words += f' -H "Authorization: Bearer ${api_key_env}"'
        words += " -d " + shlex.quote(json.dumps(body, ensure_ascii=False))
        sample = samples_by_prompt.get(_prompt(body) or "")
        response = None
        if sample is not None:
            matched = next((e for e in responses if _response_text(e.get("body")) == sample.response), None)
            response = json.dumps(matched["body"], indent=1, ensure_ascii=False) if matched else sample.response
        out.append(Example(curl=words, request=json.dumps(body, indent=1, ensure_ascii=False), response=response))
    return out


def _delta(result: BenchmarkResult, name: str) -> str:
    comparison = next((c for c in result.baseline if c.metric == name), None)
    if comparison is None:
        return "–"
    text = f"{comparison.current - comparison.baseline:+.4f}"
    if comparison.decision is not None:
        text += f" {comparison.decision.verdict}"
    if comparison.paired is not None:
        text += f" (p={comparison.paired.p_value:.3g})"
    return text + (" REGRESSED" if comparison.regressed else "")


def render_html(run: RunResult, *, title: str = "nemo-eval report", api_key_env: str | None = None) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("pytest_nemo_eval.report", "templates"),
                      autoescape=select_autoescape(["html", "html.j2"]), trim_blocks=True, lstrip_blocks=True)
    endpoint = run.provenance.get("nemo.endpoint")
    benchmarks = [{
        "result": r,
        "rows": [{"name": name, "m": m, "interval": _interval(m), "delta": _delta(r, name)}
                 for name, m in r.metrics.items()],
        "failed": failed_samples(r)[:MAX_SAMPLES_SHOWN],
        "flipped": flipped_samples(r),
        "examples": examples(r, endpoint, api_key_env),
    } for r in run.benchmarks]
    counts = {s: sum(r.status == s for r in run.benchmarks) for s in ("passed", "failed", "error", "skipped")}
    return env.get_template("report.html.j2").render(
        title=title, run=run, benchmarks=benchmarks, counts=counts, plot=score_plot_svg(run))


def write_html(run: RunResult, path: str | Path, **kwargs: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(run, **kwargs), encoding="utf-8")
    return path


class HtmlReportExporter:
    """Exporter (newhooks.py): the HTML report beside the JUnit file after every run."""

    def __init__(self, output_dir: Path, api_key_env: str | None = None) -> None:
        self.output_dir = output_dir
        self.api_key_env = api_key_env
        self.written: Path | None = None

    def pytest_nemo_run_result(self, run: RunResult, config: pytest.Config) -> None:
        from pytest_nemo_eval.report.json_file import junit_path

        junit = junit_path(config)
        path = junit.with_suffix(".html") if junit else self.output_dir / "report.html"
        self.written = write_html(run, path, api_key_env=self.api_key_env)
