"""Per-sample outputs in one documented shape, whatever harness produced them.

Every benchmark whose harness logs its samples gets
`<nemo-output-dir>/runs/<route>/<route>.samples.jsonl`, one JSON object per line:

    {"item_id": "add-17", "prompt": "12+30=", "expected": "42", "response": "42",
     "scores": {"exact_match": 1.0}, "cluster": null}

`item_id` is the dataset's id (the key a paired baseline comparison joins on), `scores` holds
the harness's per-sample score of each metric (named as the metric is reported), `cluster` the
value of the task's cluster field when it names one (for clustered standard errors).
After the session the files are also copied beside the JUnit file, into `<junit stem>.samples/`
(report/json_file.py), so a JUnit file kept as a baseline keeps its samples even when a later
run reuses the output directory.
Sources: the builtin harness's `samples_<task>.jsonl`, and lm-eval's `--log_samples` files
(`samples_<task>_<time>.jsonl`, which NeMo Evaluator's lm-evaluation-harness always writes:
item id = `doc_id`, prompt = the first request's context, response = the filtered response,
scores = each logged metric, `<metric>__<filter>` as eval-factory names filtered metrics).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

SUFFIX = ".samples.jsonl"


def samples_dir_beside(junit: Path) -> Path:
    """Where a JUnit file's per-sample files are kept: `gate.xml` -> `gate.samples/`."""
    return junit.with_name(junit.stem + ".samples")


class SampleRecord(BaseModel):
    item_id: str
    prompt: str = ""
    expected: Any = None
    response: str = ""
    scores: dict[str, float] = Field(default_factory=dict)
    cluster: str | None = None

    def score(self, metric: str) -> float | None:
        """The per-sample score of a reported metric (`exact_match`, or its long form `exact_match.exact_match`)."""
        if metric in self.scores:
            return self.scores[metric]
        return self.scores.get(metric.split(".", 1)[0])


class SamplesError(ValueError):
    """A per-sample file that cannot be read; the message names the file and the line."""


def _from_builtin(record: dict[str, Any]) -> SampleRecord:
    details = record.get("details") or {}
    cluster = details.get("cluster") if isinstance(details, dict) else None
    return SampleRecord(
        item_id=str(record["id"]),
        prompt=str(record.get("prompt", "")),
        expected=record.get("target"),
        response=str(record.get("response", "")),
        scores=record.get("scores") or {},
        cluster=None if cluster is None else str(cluster),
    )


def _lm_eval_scores(record: dict[str, Any]) -> dict[str, float]:
    """lm-eval logs each metric under its name; eval-factory reports a filtered one as `<metric>__<filter>`."""
    scores: dict[str, float] = {}
    flt = str(record.get("filter") or "none")
    for metric in record.get("metrics") or []:
        value = record.get(metric)
        if isinstance(value, (bool, int, float)):
            if flt != "none":
                scores[f"{metric}__{flt}"] = float(value)
            scores.setdefault(metric, float(value))  # the bare name: the unfiltered, else the first filter
    return scores


def _from_lm_eval(record: dict[str, Any]) -> SampleRecord:
    """One line of lm-eval's `--log_samples` output (`samples_<task>_<time>.jsonl`), which NeMo
    Evaluator's lm-eval harness always writes under its output dir."""
    arguments: Any = record.get("arguments") or []
    prompt: Any = None
    if isinstance(arguments, dict) and arguments:  # as written to disk: {"gen_args_0": {"arg_0": context, ...}}
        first = next(iter(arguments.values()))
        prompt = first.get("arg_0") if isinstance(first, dict) else first
    elif isinstance(arguments, list) and arguments:  # in memory: [(context, continuation or gen_kwargs), ...]
        first = arguments[0]
        prompt = first[0] if isinstance(first, (list, tuple)) and first else first
    responses = record.get("filtered_resps") or record.get("resps") or []
    response = responses[0] if len(responses) == 1 else responses
    while isinstance(response, list) and len(response) == 1:
        response = response[0]
    return SampleRecord(
        item_id=str(record["doc_id"]),
        prompt=_text(prompt),
        expected=record.get("target"),
        response=_text(response),
        scores=_lm_eval_scores(record),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def collect_samples(output_dir: Path) -> Path | None:
    """Write `output_dir/<dir name>.samples.jsonl` from what the harness logged there; None when it logged nothing."""
    sources = sorted(Path(output_dir).rglob("samples_*.jsonl"))  # lm-eval writes under <output>/<model>/
    if not sources:
        return None
    records: dict[str, SampleRecord] = {}
    for source in sources:
        for line in source.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            raw = json.loads(line)
            record = _from_lm_eval(raw) if "doc_id" in raw else _from_builtin(raw)
            if record.item_id in records:  # lm-eval logs a document once per filter: merge the scores
                records[record.item_id].scores.update(record.scores)
            else:
                records[record.item_id] = record
    target = Path(output_dir) / (Path(output_dir).name + SUFFIX)
    target.write_text("".join(r.model_dump_json() + "\n" for r in records.values()), encoding="utf-8")
    return target


def read_samples(path: str | Path) -> dict[str, SampleRecord]:
    """The records of a per-sample file by item id; `SamplesError` naming file and line when corrupt."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SamplesError(f"cannot read per-sample file {path}: {exc}") from None
    records: dict[str, SampleRecord] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = SampleRecord.model_validate_json(line)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"] if exc.errors() else str(exc)
            raise SamplesError(f"per-sample file {path} line {number} is not a sample record: {problem}") from None
        records[record.item_id] = record
    return records
