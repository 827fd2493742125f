"""The options of one deployment, shared by `nemo-eval deploy` (ServingStack) and the launcher (Deployment).

The launcher hands them to `nemo-eval deploy` as one JSON object (`--settings-json`), so a new
option is one field here, never a flag rebuilt by hand on either side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

BackendName = Literal["pytriton", "ray"]


class ServeSettings(BaseModel):
    checkpoint: Path
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: a free port
    max_batch_size: int = Field(default=16, ge=1)
    max_queue_delay_us: int = Field(default=2000, ge=0)
    tensor_parallel: int = Field(default=1, ge=1)
    pipeline_parallel: int = Field(default=1, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend: BackendName = "pytriton"  # serving/backends/<name>.py
    replicas: int = Field(default=1, ge=1)  # ray: model copies behind one endpoint
    replica_cpus: float = Field(default=1.0, gt=0)  # ray, on CPU: the CPUs Ray reserves for each replica
    ray_address: str | None = None  # ray: an existing cluster (auto, host:port, ray://host:port); None: own head
    tool_parser: str | None = None  # serving/tool_parsers/<name>.py; None: chosen from the chat template
    reasoning_parser: str | None = None  # serving/reasoning_parsers/<name>.py; likewise ("none": off)

    @model_validator(mode="after")
    def _replicas_need_ray(self) -> "ServeSettings":
        if self.backend != "ray" and self.replicas != 1:
            raise ValueError(f"{self.replicas} replicas need the ray serving backend (--nemo-serving-backend ray); "
                             f"the {self.backend} backend serves one copy of the model.")
        if self.backend != "ray" and self.ray_address:
            raise ValueError(f"A Ray address ({self.ray_address}) was given but the serving backend is "
                             f"{self.backend}; add --nemo-serving-backend ray or drop the address.")
        return self
