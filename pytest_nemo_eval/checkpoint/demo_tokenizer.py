"""The demo checkpoint's character-level tokenizer, written as real Hugging Face tokenizer files.

Every printable ASCII character and the newline is one token; chat roles and
end-of-text are special tokens. Any other character is spelled as its UTF-8
bytes, one `<0xNN>` token each, the byte fallback of Llama's and Mistral's
tokenizers (a BPE model with `byte_fallback`, decoded by `ByteFallback` then
`Fuse`), so every UTF-8 text round-trips and no prompt meets `<unk>`. The chat
template renders `<|user|>{content}\\n` per message and `<|assistant|>` as the
generation prompt.
"""

from __future__ import annotations

from pathlib import Path

EOS = "<|endoftext|>"
PAD = "<|pad|>"
UNK = "<unk>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (EOS, PAD, UNK, *ROLE_TOKENS)
CHARACTERS = "\n" + "".join(chr(code) for code in range(32, 127))
BYTE_TOKENS = tuple(f"<0x{byte:02X}>" for byte in range(256))  # the spelling SentencePiece and HF use
CONTEXT_LENGTH = 4096  # the served context (model.yaml seq_length, tokenizer model_max_length)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def vocabulary() -> list[str]:
    """Every token in id order: special tokens, characters, then the 256 byte tokens."""
    return [*SPECIAL_TOKENS, *CHARACTERS, *BYTE_TOKENS]


def build_tokenizer():
    """A `tokenizers.Tokenizer`: BPE without merges over single characters (so one character, one token),
    other characters as byte tokens, fused back on decode."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: index for index, token in enumerate(vocabulary())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK, byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    return tokenizer


def write_tokenizer_files(folder: Path) -> None:
    """The Hugging Face tokenizer files, saved by transformers as NeMo's nemo_tokenizer/ holds them
    (tokenizer.json, tokenizer_config.json, chat_template.jinja)."""
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(), eos_token=EOS, pad_token=PAD, unk_token=UNK, model_max_length=CONTEXT_LENGTH,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(folder))
