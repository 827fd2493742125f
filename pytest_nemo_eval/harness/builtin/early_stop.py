"""Stop a builtin task as soon as its verdict is settled (suite `early_stop: true`, docs/concepts/gate-policy.md).

After every scored sample (in dataset order) the gated metric's betting confidence sequence
(pytest_nemo_eval/confseq.py) is updated; the task stops when it lies wholly inside the threshold's
bounds (pass) or wholly outside them (fail). The sequence is anytime-valid, so the verdict's error stays
at most alpha however early it stops. What happened goes to `early_stop.json` beside the results:
the samples used and planned, why it stopped, and the sequence's interval, which the plugin reports
(JUnit `nemo.early_stop`) and gates on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from pytest_nemo_eval.confseq import BettingCS

from ..errors import HarnessError

EARLY_STOP_FILE = "early_stop.json"


class EarlyStop(BaseModel):
    """The metric to watch and its threshold, from the harness's overrides."""

    metric: str
    min: float | None = None
    max: float | None = None
    alpha: float = Field(default=0.05, gt=0, lt=1)


class EarlyStopRecord(BaseModel):
    """What `early_stop.json` holds."""

    metric: str
    samples_used: int
    samples_planned: int
    reason: Literal["pass", "fail", "exhausted"]  # settled above/inside, settled outside, never settled
    ci_low: float
    ci_high: float
    alpha: float

    def describe(self) -> str:
        why = {"pass": "the confidence sequence cleared the threshold",
               "fail": "the confidence sequence missed the threshold",
               "exhausted": "every planned sample used, never settled"}[self.reason]
        return (f"early stop on {self.metric}: {self.samples_used}/{self.samples_planned} samples, {why} "
                f"({1 - self.alpha:.0%} betting CS [{self.ci_low:.4f}, {self.ci_high:.4f}])")


class EarlyStopper:
    """Feeds one metric's per-sample scores into the sequence; `observe` says when to stop."""

    def __init__(self, rule: EarlyStop, metrics: tuple[str, ...] | list[str]) -> None:
        names = {rule.metric, rule.metric.rsplit(".", 1)[-1], rule.metric.split(".", 1)[0]}
        found = [m for m in metrics if m in names]
        if not found:
            raise HarnessError(f"early_stop watches {rule.metric!r}, which this task does not score; its metrics: "
                             f"{', '.join(metrics)}. Put the threshold on one of them.")
        self.rule, self.metric = rule, found[0]
        self.cs = BettingCS(rule.alpha, extra_points=[b for b in (rule.min, rule.max) if b is not None])
        self.reason: Literal["pass", "fail"] | None = None

    def observe(self, scores: dict[str, float]) -> bool:
        """Add one sample's score; True once the verdict is settled."""
        self.cs.update(scores[self.metric])
        self.reason = self.cs.decision(self.rule.min, self.rule.max)
        return self.reason is not None

    def write(self, output_dir: Path, planned: int) -> EarlyStopRecord:
        low, high = self.cs.interval()
        record = EarlyStopRecord(metric=self.metric, samples_used=self.cs.t, samples_planned=planned,
                                 reason=self.reason or "exhausted", ci_low=low, ci_high=high, alpha=self.rule.alpha)
        (Path(output_dir) / EARLY_STOP_FILE).write_text(record.model_dump_json() + "\n", encoding="utf-8")
        return record


def read_record(output_dir: Path | None) -> EarlyStopRecord | None:
    """The record a run left, if it stopped early (or watched and ran out)."""
    path = Path(output_dir) / EARLY_STOP_FILE if output_dir is not None else None
    if path is None or not path.is_file():
        return None
    return EarlyStopRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
