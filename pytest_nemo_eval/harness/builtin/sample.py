"""What scoring one dataset record produces, and the run-wide generation settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GenerationParams(BaseModel):
    """Overrides that apply to every generation of a run (None: the task spec's own value)."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def generate(self, client, spec, prompt: str) -> str:
        """Generate for `prompt` with the spec's settings, these overrides winning."""
        return client.generate(
            prompt,
            max_tokens=self.max_tokens if self.max_tokens is not None else spec.max_tokens,
            temperature=self.temperature if self.temperature is not None else spec.temperature,
            stop=spec.stop, top_p=self.top_p, seed=self.seed,
        )


class SampleOutcome(BaseModel):
    """One line of the per-sample outputs JSONL."""

    id: Any
    prompt: str
    response: str
    target: Any = None
    scores: dict[str, float] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
