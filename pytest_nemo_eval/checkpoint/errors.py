"""The one error type of checkpoint reading: its message says what is wrong and what to do."""


class CheckpointError(ValueError):
    """A checkpoint path, config, tokenizer or weight file cannot be used."""
