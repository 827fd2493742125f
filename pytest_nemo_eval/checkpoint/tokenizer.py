"""The checkpoint's tokenizer: Hugging Face `tokenizer.json` (+ tokenizer_config.json) or SentencePiece.

NeMo 2.0 keeps the tokenizer files under `context/nemo_tokenizer/` (some exports
put them straight in `context/`). The chat template, when present, comes from
tokenizer_config.json's `chat_template`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import CheckpointError

TOKENIZER_SUBDIRS = ("nemo_tokenizer", ".")


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int
    bos_id: int | None
    chat_template: str | None

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def token_str(self, token_id: int) -> str: ...


def _read_tokenizer_config(folder: Path) -> dict:
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from None


def _special_token(config: dict, key: str) -> str | None:
    value = config.get(key)
    return value.get("content") if isinstance(value, dict) else value


class HFTokenizer:
    """A `tokenizers` tokenizer.json; special tokens and chat template from tokenizer_config.json."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer as RawTokenizer

        path = folder / "tokenizer.json"
        try:
            self._tok = RawTokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises a bare Exception on bad files
            raise CheckpointError(f"{path} cannot be read by the `tokenizers` library: {exc}.") from None
        config = _read_tokenizer_config(folder)
        self.chat_template: str | None = config.get("chat_template")
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        eos = _special_token(config, "eos_token")
        bos = _special_token(config, "bos_token")
        eos_id = self._tok.token_to_id(eos) if eos else None
        if eos_id is None:
            raise CheckpointError(
                f"{folder / 'tokenizer_config.json'} names no `eos_token` found in {path}; generation needs "
                "an end-of-sequence token. Add eos_token to tokenizer_config.json."
            )
        self.eos_id: int = eos_id
        self.bos_id: int | None = self._tok.token_to_id(bos) if bos else None
        self.add_bos = bool(config.get("add_bos_token", False)) and self.bos_id is not None

    def encode(self, text: str) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if self.add_bos else ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def token_str(self, token_id: int) -> str:
        return self._tok.decode([token_id], skip_special_tokens=False)


class SentencePieceTokenizer:
    """A SentencePiece `.model` file (needs the optional `sentencepiece` package)."""

    def __init__(self, model_file: Path, folder: Path) -> None:
        try:
            import sentencepiece
        except ImportError:
            raise CheckpointError(
                f"The checkpoint's tokenizer is SentencePiece ({model_file}) but the `sentencepiece` package is "
                "not installed. Install it with `pip install sentencepiece`."
            ) from None
        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        config = _read_tokenizer_config(folder)
        self.chat_template = config.get("chat_template")
        self.vocab_size = self._sp.get_piece_size()
        self.eos_id = self._sp.eos_id()
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode(list(ids))

    def token_str(self, token_id: int) -> str:
        return self._sp.id_to_piece(token_id).replace("\u2581", " ")


def load_tokenizer(context_dir: Path) -> Tokenizer:
    """Find and load the tokenizer under `context_dir`; a clear error when there is none."""
    context_dir = Path(context_dir)
    for sub in TOKENIZER_SUBDIRS:
        folder = (context_dir / sub).resolve()
        if (folder / "tokenizer.json").is_file():
            return HFTokenizer(folder)
        sp_models = sorted(folder.glob("*.model")) if folder.is_dir() else []
        if sp_models:
            return SentencePieceTokenizer(sp_models[0], folder)
    raise CheckpointError(
        f"No tokenizer found in {context_dir}/nemo_tokenizer/ or {context_dir}/: expected tokenizer.json "
        "(Hugging Face) or a SentencePiece .model file. Copy the model's tokenizer files into "
        "context/nemo_tokenizer/."
    )
