"""Generative exact match: generate, extract the answer with a regex, compare to the reference."""

from __future__ import annotations

import re

from .client import ModelClient
from .sample import GenerationParams, SampleOutcome
from .tasks import ExactMatchSpec

METRICS = ("exact_match",)


def required_fields(spec: ExactMatchSpec) -> list[str]:
    return [spec.answer_field]


def extract_answer(spec: ExactMatchSpec, response: str) -> str | None:
    """The answer in `response`: first group (else whole match) of the spec's regex, or the stripped text."""
    if spec.extract_regex is None:
        return response.strip()
    matches = list(re.finditer(spec.extract_regex, response))
    if not matches:
        return None
    match = matches[0] if spec.extract == "first" else matches[-1]
    return (match.group(1) if match.groups() else match.group(0)).strip()


def _normalize(spec: ExactMatchSpec, text: str) -> str:
    text = text.strip().replace(",", "") if spec.extract_regex else text.strip()
    return text.lower() if spec.ignore_case else text


def score(spec: ExactMatchSpec, client: ModelClient, record: dict, params: GenerationParams) -> SampleOutcome:
    prompt = spec.render_prompt(record)
    response = params.generate(client, spec, prompt)
    target = str(record[spec.answer_field])
    extracted = extract_answer(spec, response)
    correct = extracted is not None and _normalize(spec, extracted) == _normalize(spec, target)
    return SampleOutcome(
        id=record.get(spec.id_field), prompt=prompt, response=response, target=target,
        scores={"exact_match": float(correct)}, details={"extracted": extracted},
    )
