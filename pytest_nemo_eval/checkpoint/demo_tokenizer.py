"""The demo checkpoint's character-level tokenizer, written as real Hugging Face tokenizer files.

Every printable ASCII character and the newline is one token; chat roles and
end-of-text are special tokens. Any other character is spelled as its UTF-8
bytes, one `<0xNN>` token each, the byte fallback of Llama's and Mistral's
tokenizers (a BPE model with `byte_fallback`, decoded by `ByteFallback` then
`Fuse`), so every UTF-8 text round-trips and no prompt meets `<unk>`. The chat
template renders `<|user|>{content}\\n` per message and `<|assistant|>` as the
generation prompt; with `tools` it renders them, the calls and the results as
Hermes/Qwen2.5 do (see CHAT_TEMPLATE), so a `hermes` tool parser reads the calls.
`<tool_call>` is plain characters, not a special token, so decoding keeps it.
It takes `enable_thinking` as Qwen3's does (see THINKING_SWITCH): with it on, the model writes a short thought
first, `<think>12+34</think>46`, and an assistant turn's `reasoning_content` is rendered the same way.
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
TOOLS_HEADER = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n<tools>"
# Turns are `<|role|>content\n`; the generation prompt is `<|assistant|>`. With `tools`, a system turn lists
# them as Hermes/Qwen2.5 do (one `tojson` line each inside <tools>, after the first system message's content),
# an assistant's tool_calls are `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>` (arguments as
# vLLM passes them: a decoded object, or a string kept as it is), and tool results go inside a user turn as
# <tool_response> blocks (consecutive ones share the turn). Whitespace is controlled with `-` and every
# newline is written out, so transformers' trim_blocks/lstrip_blocks and plain jinja2 render alike.
# Thinking (chat_template_kwargs `enable_thinking`, as Qwen3's template takes it). Off by default (our design;
# Qwen3's default is on), and off leaves every prompt exactly as before, so hand-written `<|user|>..<|assistant|>`
# prompts and all chat training texts keep their tokens. Qwen3 shows the switch to the model by prefilling an
# empty `<think>\n\n</think>\n\n` when it is off; ours, whose off prompt must not change, shows it when it is on,
# with Qwen3's own soft switch `/think` as a first system line. The model then opens the thought itself, as Qwen3
# does, so the qwen3 reasoning parser (chosen from this template: it names `enable_thinking` and `<think>`) splits
# `<think>12+34</think>46` into reasoning `12+34` and content `46`, and a reply without `<think>` is all content.
# An assistant turn's `reasoning_content` is rendered as `<think>..</think>` before its content (Qwen3 keeps it
# for the turns after the last user query and drops it before; ours keeps it always, so a conversation sent back
# with its thoughts renders what the model wrote).
THINKING_SWITCH = "/think"
CHAT_TEMPLATE = (
    "{%- if enable_thinking is defined and enable_thinking %}{{- '<|system|>" + THINKING_SWITCH + "\\n' }}{%- endif %}"
    "{%- if tools %}"
    "{{- '<|system|>' }}"
    "{%- if messages and messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{{- '\\n\\n' }}{%- endif %}"
    "{{- '" + TOOLS_HEADER.replace("\n", "\\n") + "' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if tools and loop.first and message['role'] == 'system' %}"
    "{%- elif message['role'] == 'assistant' and message.tool_calls %}"
    "{{- '<|assistant|>' }}"
    "{%- if message.reasoning_content %}{{- '<think>' + message.reasoning_content + '</think>' }}{%- endif %}"
    "{%- if message['content'] %}{{- message['content'] }}{%- endif %}"
    "{%- for call in message.tool_calls %}"
    "{%- if call.function is defined %}{%- set call = call.function %}{%- endif %}"
    "{%- if message['content'] or not loop.first %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": ' }}{{- call.name | tojson }}{{- ', \"arguments\": ' }}"
    "{%- if call.arguments is string %}{{- call.arguments }}{%- else %}{{- call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '\\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|user|>' }}{%- endif %}"
    "{{- '<tool_response>\\n' }}{{- message['content'] }}{{- '\\n</tool_response>\\n' }}"
    "{%- elif message['role'] == 'assistant' and message.reasoning_content %}"
    "{{- '<|assistant|><think>' + message.reasoning_content + '</think>' }}{{- message['content'] }}{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|' + message['role'] + '|>' }}{{- message['content'] }}{{- '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- endif %}"
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


def hf_tokenizer():
    """The transformers tokenizer the checkpoint's files are saved from (chat template included)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(), eos_token=EOS, pad_token=PAD, unk_token=UNK, model_max_length=CONTEXT_LENGTH,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def write_tokenizer_files(folder: Path) -> None:
    """The Hugging Face tokenizer files, saved by transformers as NeMo's nemo_tokenizer/ holds them
    (tokenizer.json, tokenizer_config.json, chat_template.jinja)."""
    folder.mkdir(parents=True, exist_ok=True)
    hf_tokenizer().save_pretrained(str(folder))


class ChatRenderer:
    """CHAT_TEMPLATE rendered by transformers' apply_chat_template, as the server renders it, so training
    texts and served prompts are the same characters."""

    def __init__(self) -> None:
        self._tokenizer = hf_tokenizer()

    def render(self, messages: list[dict], tools: list[dict] | None = None, add_generation_prompt: bool = False,
               **chat_template_kwargs) -> str:
        return self._tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                                   tokenize=False, **chat_template_kwargs)

    def prompt_and_completion(self, messages: list[dict], reply: dict, tools: list[dict] | None = None,
                              **chat_template_kwargs) -> tuple[str, str]:
        """(generation prompt for `messages`, what the model must generate for the assistant turn `reply`):
        the template's rendering of that turn without the newline that closes it, then end-of-text."""
        prompt = self.render(messages, tools, add_generation_prompt=True, **chat_template_kwargs)
        full = self.render([*messages, reply], tools, **chat_template_kwargs)
        if not full.startswith(prompt) or not full.endswith("\n"):
            raise ValueError(f"the chat template does not render {reply} as a continuation of {prompt!r}: {full!r}")
        return prompt, full[len(prompt):-1] + EOS
