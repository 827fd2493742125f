"""The options of one deployment, shared by `nemo-eval deploy` (ServingStack) and the launcher (Deployment)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class ServeSettings(BaseModel):
    checkpoint: Path
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: a free port
    max_batch_size: int = Field(default=16, ge=1)
    max_queue_delay_us: int = Field(default=2000, ge=0)
    tensor_parallel: int = Field(default=1, ge=1)
    pipeline_parallel: int = Field(default=1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
