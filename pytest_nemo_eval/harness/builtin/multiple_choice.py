"""Multiple choice by loglikelihood over the completions API (lm-evaluation-harness style).

acc: the choice with the highest summed log-probability is the prediction;
acc_norm: the same after dividing each by the choice's length in UTF-8 bytes,
so long answers are not penalised for having more tokens.
"""

from __future__ import annotations

from .client import ModelClient
from .dataset import DatasetError
from .sample import GenerationParams, SampleOutcome
from .tasks import MultipleChoiceSpec

METRICS = ("acc", "acc_norm")


def required_fields(spec: MultipleChoiceSpec) -> list[str]:
    return [spec.choices_field, spec.label_field]


def score(spec: MultipleChoiceSpec, client: ModelClient, record: dict, params: GenerationParams) -> SampleOutcome:
    prompt = spec.render_prompt(record)
    choices = [str(c) for c in record[spec.choices_field]]
    label = record[spec.label_field]
    if isinstance(label, str) and label in choices:
        label = choices.index(label)
    if not isinstance(label, int) or not 0 <= label < len(choices):
        raise DatasetError(
            f"record {record.get(spec.id_field)!r}: label {record[spec.label_field]!r} is neither an index "
            f"into its {len(choices)} choices nor one of them; fix that record."
        )
    continuations = [spec.choice_template.format(choice=c) for c in choices]
    loglikelihoods = [client.loglikelihood(prompt, c) for c in continuations]
    normalized = [ll / max(1, len(c.encode("utf-8"))) for ll, c in zip(loglikelihoods, continuations)]
    predicted = max(range(len(choices)), key=loglikelihoods.__getitem__)
    predicted_norm = max(range(len(choices)), key=normalized.__getitem__)
    return SampleOutcome(
        id=record.get(spec.id_field), prompt=prompt, response=choices[predicted], target=choices[label],
        scores={"acc": float(predicted == label), "acc_norm": float(predicted_norm == label)},
        details={"loglikelihoods": loglikelihoods},
    )
