"""NeMo 2.0 and Megatron-Bridge checkpoint reading (megatron-core GPTModel + tokenizer) and the demo checkpoint.

`detect_layout(path)` says which format and iteration a path holds without loading it (provenance)."""

from .errors import CheckpointError
from .layout import CheckpointLayout, detect_layout
from .loader import LoadedCheckpoint, load_checkpoint

__all__ = ["CheckpointError", "CheckpointLayout", "LoadedCheckpoint", "detect_layout", "load_checkpoint"]
