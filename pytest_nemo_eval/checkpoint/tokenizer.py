"""The checkpoint's tokenizer, read the way NeMo reads it: transformers' AutoTokenizer (or SentencePiece).

NeMo 2.0 keeps the tokenizer files under `context/nemo_tokenizer/` (model.yaml's
`tokenizer.pretrained_model_name: nemo_tokenizer`; some exports put them straight
in `context/`), and loads them with transformers' AutoTokenizer. So do we,
offline: the chat template then comes from wherever transformers finds it
(`chat_template.jinja`, which NeMo writes, or tokenizer_config.json), unless
model.yaml's tokenizer sets `chat_template`, which NeMo's AutoTokenizer applies.

Encoding follows NeMo's `text_to_ids` (tokenize, then ids) and NeMo's deployable,
which generates with `add_BOS=False` (nemo/deploy/nlp/megatronllm_deployable.py):
no BOS is added to a plain completion prompt. Chat prompts are rendered by transformers'
`apply_chat_template`, which passes `bos_token`/`eos_token` and the other
special tokens to the template; a template that starts with `{{ bos_token }}`
thus yields the BOS token, exactly as Hugging Face does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import yaml

from .errors import CheckpointError

TOKENIZER_SUBDIRS = ("nemo_tokenizer", ".")
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int
    bos_id: int | None
    chat_template: str | None

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def token_str(self, token_id: int) -> str: ...
    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, *,
                            tools: list[dict[str, Any]] | None = None, continue_final_message: bool = False,
                            **template_kwargs: Any) -> str: ...


def _default_chat(messages: list[dict[str, Any]], add_generation_prompt: bool, bos: str, eos: str,
                  tools: list[dict[str, Any]] | None = None, continue_final_message: bool = False) -> str:
    """The project's fallback template, for tokenizers that carry none; it always ends ready for
    the assistant's turn, and renders no tools (the front refuses tools it cannot render)."""
    if not add_generation_prompt or continue_final_message:
        raise ValueError("add_generation_prompt=false and continue_final_message need the checkpoint's own chat "
                         "template; this tokenizer has none")
    from pytest_nemo_eval.serving.chat_template import render_chat

    return render_chat(messages, None, bos_token=bos, eos_token=eos)


def _tokenizer_section(context_dir: Path) -> dict[str, Any]:
    """model.yaml's `tokenizer:` mapping (NeMo's AutoTokenizer arguments), or {}."""
    path = context_dir / "model.yaml"
    if not path.is_file():
        return {}
    try:
        section = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("tokenizer")
    except yaml.YAMLError:
        return {}  # config.py reports the broken YAML
    return section if isinstance(section, dict) else {}


class HFTokenizer:
    """transformers' AutoTokenizer on a local folder (offline), with NeMo's encode and HF's chat rendering."""

    def __init__(self, folder: Path, overrides: dict[str, Any] | None = None) -> None:
        overrides = overrides or {}
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        try:
            self._tok = AutoTokenizer.from_pretrained(  # a local folder, never the hub
                str(folder), local_files_only=True, use_fast=overrides.get("use_fast", True),
                trust_remote_code=bool(overrides.get("trust_remote_code", False)),
            )
        except Exception as exc:  # transformers and tokenizers raise many types on bad files
            detail = str(exc).strip().splitlines()
            raise CheckpointError(
                f"The tokenizer in {folder} cannot be read by transformers' AutoTokenizer "
                f"({type(exc).__name__}: {detail[0] if detail else 'no detail'}); its tokenizer.json / "
                "tokenizer_config.json may be corrupted. Copy the model's Hugging Face tokenizer files there again."
            ) from None
        self._apply_overrides(folder, overrides)
        self.chat_template: str | None = self._tok.chat_template
        self.vocab_size = len(self._tok)
        if self._tok.eos_token_id is None:
            raise CheckpointError(
                f"The tokenizer in {folder} has no `eos_token`; generation needs an end-of-sequence token. "
                "Add eos_token to its tokenizer_config.json (or to model.yaml's tokenizer section)."
            )
        self.eos_id: int = int(self._tok.eos_token_id)
        self.bos_id: int | None = self._tok.bos_token_id

    def _apply_overrides(self, folder: Path, overrides: dict[str, Any]) -> None:
        """What NeMo's AutoTokenizer does with model.yaml's tokenizer arguments: special tokens, chat_template."""
        for key in ("bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token"):
            token = overrides.get(key)
            if token is None:
                continue
            if self._tok.convert_tokens_to_ids(token) in (None, self._tok.unk_token_id) and token != self._tok.unk_token:
                raise CheckpointError(
                    f"model.yaml's tokenizer sets `{key}: {token}`, which is not in the vocabulary of {folder}; "
                    "NeMo would add it as a new token, which these weights have no embedding for. Remove the line "
                    "or name a token of the vocabulary."
                )
            setattr(self._tok, key, token)
        if overrides.get("chat_template"):
            self._tok.chat_template = overrides["chat_template"]

    def encode(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def token_str(self, token_id: int) -> str:
        return self._tok.decode([token_id], skip_special_tokens=False)

    @property
    def hf(self) -> Any:
        """The transformers tokenizer itself (the grammar engine builds its token table from it)."""
        return self._tok

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, *,
                            tools: list[dict[str, Any]] | None = None, continue_final_message: bool = False,
                            **template_kwargs: Any) -> str:
        """transformers' apply_chat_template, as vLLM calls it: tools and the request's chat_template_kwargs
        reach the template."""
        if self.chat_template is None:
            return _default_chat(messages, add_generation_prompt, self._tok.bos_token or "", self._tok.eos_token,
                                 tools, continue_final_message)
        return self._tok.apply_chat_template(
            messages, tools=tools, add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, tokenize=False, **template_kwargs)


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
        self.chat_template = None
        self.vocab_size = self._sp.get_piece_size()
        self.eos_id = self._sp.eos_id()
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode(list(ids))

    def token_str(self, token_id: int) -> str:
        return self._sp.id_to_piece(token_id).replace("\u2581", " ")

    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, *,
                            tools: list[dict[str, Any]] | None = None, continue_final_message: bool = False,
                            **template_kwargs: Any) -> str:
        bos = self._sp.id_to_piece(self.bos_id) if self.bos_id is not None else ""
        return _default_chat(messages, add_generation_prompt, bos, self._sp.id_to_piece(self.eos_id), tools,
                             continue_final_message)


def load_tokenizer(context_dir: Path) -> Tokenizer:
    """Find and load the tokenizer under `context_dir`; a clear error when there is none."""
    context_dir = Path(context_dir)
    section = _tokenizer_section(context_dir)
    for sub in TOKENIZER_SUBDIRS:
        folder = (context_dir / sub).resolve()
        if not folder.is_dir():
            continue
        if any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
            return HFTokenizer(folder, section)
        sp_models = sorted(folder.glob("*.model"))
        if sp_models:
            return SentencePieceTokenizer(sp_models[0], folder)
    named = section.get("pretrained_model_name") or section.get("library")
    hub = ""
    if named and named != "nemo_tokenizer":
        hub = (f" model.yaml names the tokenizer `{named}`, a Hugging Face hub name, which is not fetched: serving "
               "is offline and must use the tokenizer the checkpoint was trained with.")
    raise CheckpointError(
        f"No tokenizer found in {context_dir}/nemo_tokenizer/ or {context_dir}/: expected tokenizer.json or "
        f"tokenizer_config.json (Hugging Face) or a SentencePiece .model file.{hub} Copy the model's tokenizer "
        "files into context/nemo_tokenizer/ (e.g. `AutoTokenizer.from_pretrained(NAME).save_pretrained(...)` "
        "where the hub is reachable)."
    )

