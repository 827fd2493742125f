"""NeMo 2.0 checkpoint reading (megatron-core GPTModel + tokenizer) and the demo checkpoint."""

from .errors import CheckpointError
from .loader import LoadedCheckpoint, load_checkpoint

__all__ = ["CheckpointError", "LoadedCheckpoint", "load_checkpoint"]
